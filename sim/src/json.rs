//! `--json`: one JSON object per line for tools, instead of the text lines. Every object has a
//! `type`: `run` (one run: its options, verdict, trace hash and violations), `failure` (one
//! failing seed of a sweep, as soon as it is found), `sweep` (a sweep's totals, at its end),
//! `replay` (a replay's outcome around its run).

use harness::{RunReport, Violation};
use serde_json::{Map, Value, json};

pub fn violation(v: &Violation) -> Value {
    let mut o = Map::new();
    o.insert("oracle".into(), json!(v.oracle));
    o.insert("kind".into(), json!(v.kind));
    o.insert("actor".into(), json!(v.actor));
    o.insert("object".into(), json!(v.object));
    o.insert("message".into(), json!(v.message));
    if let Some(at) = v.at {
        o.insert("step".into(), json!(at.step));
        o.insert("time_ns".into(), json!(at.time_ns));
        o.insert("trace_line".into(), json!(at.event + 1));
    }
    Value::Object(o)
}

/// A run as one object; `trace` adds its (filtered) trace lines.
pub fn run(report: &RunReport, trace: Option<Vec<&str>>) -> Value {
    let (seed, bytes) = match &report.source {
        simkit::DecisionMode::Seeded(s) => (Some(*s), None),
        simkit::DecisionMode::Bytes(b) => (None, Some(crate::replay_file::to_hex(b))),
    };
    let options: Map<String, Value> = report
        .options
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let mut o = Map::new();
    o.insert("type".into(), json!("run"));
    o.insert("seed".into(), json!(seed));
    if let Some(b) = bytes {
        o.insert("decisions_hex".into(), json!(b));
    }
    o.insert("scenario".into(), json!(report.scenario));
    o.insert("strategy".into(), json!(report.strategy.name()));
    o.insert("mem".into(), json!(report.mem.name()));
    o.insert("plant".into(), json!(report.plant));
    o.insert("options".into(), Value::Object(options));
    o.insert("steps".into(), json!(report.steps));
    o.insert("sim_time_ns".into(), json!(report.sim_ns));
    o.insert("decisions".into(), json!(report.draws));
    o.insert("events".into(), json!(report.events));
    o.insert(
        "trace_hash".into(),
        json!(format!("{:016x}", report.trace_hash)),
    );
    o.insert(
        "verdict".into(),
        json!(if report.passed() { "pass" } else { "fail" }),
    );
    o.insert(
        "violations".into(),
        Value::Array(report.violations.iter().map(violation).collect()),
    );
    if let Some(lines) = trace {
        o.insert("trace".into(), json!(lines));
    }
    Value::Object(o)
}

/// Prints one object on one line.
pub fn print(v: &Value) {
    crate::outln!("{v}");
}
