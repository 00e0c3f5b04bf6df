//! What scripts can rely on: `sim replay` exit codes (0 passed as recorded, 1 failed exactly as
//! recorded and says "reproduced", 3 diverged naming the first difference), `--save` for any
//! single run, `SIM_SEED`, `--json`, `--trace-filter`, and traces that name what they touch.

mod common;

use common::*;
use std::path::Path;

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).expect("read")).expect("json")
}

#[test]
fn a_faithful_replay_says_reproduced_and_an_edited_option_is_named() {
    let dir = scratch("replay-contract");
    let file = dir.join("seed.json");
    // A failing run saved straight from `--seed` (no sweep needed).
    let o = sim(&[
        "--seed",
        "1",
        "--scenario",
        "litmus-sb",
        "--mem",
        "tso",
        "--save",
        utf8(&file),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let r = sim(&["replay", utf8(&file)]);
    assert_eq!(r.status.code(), Some(1), "{}", stderr(&r));
    assert!(stdout(&r).contains("reproduced"), "{}", stdout(&r));
    assert_eq!(last_line(&r), last_line(&o));
    // A passing run replays with exit 0.
    let pass = dir.join("pass.json");
    let o = sim(&["--seed", "2", "--save", utf8(&pass)]);
    assert_eq!(o.status.code(), Some(0));
    let r = sim(&["replay", utf8(&pass)]);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    assert!(stdout(&r).contains("reproduced"));
    // One option edited: exit 3, and the option is named.
    for (field, value, named) in [
        ("mem", serde_json::json!("sc"), "'mem'"),
        ("strategy", serde_json::json!("pct"), "'pct_depth'"),
    ] {
        let mut v = read_json(&file);
        v[field] = value;
        let edited = dir.join(format!("edited-{field}.json"));
        std::fs::write(&edited, v.to_string()).expect("write");
        let r = sim(&["replay", utf8(&edited)]);
        assert_eq!(r.status.code(), Some(3), "{field}: {}", stderr(&r));
        let first = stderr(&r).lines().next().unwrap_or_default().to_string();
        assert!(
            first.contains("DIVERGED") && first.contains(named),
            "{field}: {first}"
        );
    }
    // A derived option edited in the file's list of options.
    let mut v = read_json(&file);
    let options = v["options"].as_array_mut().expect("options");
    let buggify = options
        .iter_mut()
        .find(|o| o[0] == "buggify")
        .expect("a buggify option");
    buggify[1] = serde_json::json!("true");
    let edited = dir.join("edited-option.json");
    std::fs::write(&edited, v.to_string()).expect("write");
    let r = sim(&["replay", utf8(&edited)]);
    assert_eq!(r.status.code(), Some(3), "{}", stderr(&r));
    assert!(stderr(&r).contains("option 'buggify'"), "{}", stderr(&r));
    // A different seed: the options agree, the first differing trace line is named.
    let mut v = read_json(&file);
    v["seed"] = serde_json::json!(2);
    let edited = dir.join("edited-seed.json");
    std::fs::write(&edited, v.to_string()).expect("write");
    let r = sim(&["replay", utf8(&edited)]);
    assert_eq!(r.status.code(), Some(3), "{}", stderr(&r));
    assert!(
        stderr(&r).contains("first differing trace line"),
        "{}",
        stderr(&r)
    );
}

#[test]
fn sim_seed_gives_a_bare_run_its_seed() {
    let flag = sim(&["--seed", "17"]);
    let env = command().env("SIM_SEED", "17").output().expect("sim runs");
    assert_eq!(env.status.code(), Some(0), "{}", stderr(&env));
    assert_eq!(last_line(&env), last_line(&flag));
    assert!(last_line(&env).starts_with("seed=17 "));
    let bad = command().env("SIM_SEED", "soon").output().expect("runs");
    assert_refused(&bad, "SIM_SEED='soon'");
}

#[test]
fn json_is_one_object_per_run() {
    let o = sim(&["--seed", "4", "--json"]);
    assert_eq!(o.status.code(), Some(0));
    let printed = stdout(&o);
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 1, "{}", stdout(&o));
    let v: serde_json::Value = serde_json::from_str(lines[0]).expect("json");
    assert_eq!(v["type"], "run");
    assert_eq!(v["seed"], 4);
    assert_eq!(v["verdict"], "pass");
    assert_eq!(v["trace_hash"].as_str().map(str::len), Some(16));
    // A failing run: each violation with where it was first visible.
    let o = sim(&[
        "--seed",
        "1",
        "--scenario",
        "litmus-sb",
        "--mem",
        "tso",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("json");
    assert_eq!(v["verdict"], "fail");
    let first = &v["violations"][0];
    assert_eq!(first["oracle"], "litmus-sc");
    assert!(
        first["step"].is_u64() && first["trace_line"].is_u64(),
        "{first}"
    );
    // A sweep: one object per failure, one for the sweep.
    let dir = scratch("json-sweep");
    let o = sim(&[
        "sweep",
        "--scenario",
        "litmus-sb",
        "--mem",
        "tso",
        "--seeds",
        "0..30",
        "--json",
        "--reports",
        utf8(&dir),
    ]);
    let objects: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let failures = objects.iter().filter(|v| v["type"] == "failure").count();
    let sweep = objects.last().expect("a sweep object");
    assert_eq!(sweep["type"], "sweep");
    assert_eq!(sweep["failures"], failures as u64);
    assert!(failures > 0);
    assert!(objects.iter().filter(|v| v["type"] == "failure").all(|v| {
        v["replay_command"]
            .as_str()
            .is_some_and(|c| c.starts_with("sim replay "))
    }));
}

#[test]
fn traces_name_fields_and_show_parks_wakes_and_interrupts() {
    let o = sim(&["--seed", "1", "--scenario", "pipe-echo", "--trace"]);
    let out = stdout(&o);
    for want in [
        " shm.pipe0.g2h.write ",
        ".h2g.data+",
        " park irq0",
        " wake irq0 ",
        " deliver epoch=",
        " halt",
        " resume ",
    ] {
        assert!(out.contains(want), "no '{want}' in the trace");
    }
    assert!(
        !out.lines().any(|l| l.contains(" shm+")),
        "an unnamed shared-memory access remains"
    );
    let o = sim(&["--seed", "1", "--trace"]);
    assert!(stdout(&o).contains("producer store mbox.seq v=1 o=rel"));
    // Filtered: only the consumer's parks and wakes.
    let o = sim(&[
        "--seed",
        "1",
        "--trace-filter",
        "actor=consumer,event=park|wake",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let printed = stdout(&o);
    let trace: Vec<&str> = printed.lines().filter(|l| l.starts_with("t=")).collect();
    assert!(!trace.is_empty());
    assert!(
        trace
            .iter()
            .all(|l| l.contains(" consumer park ") || l.contains(" consumer wake ")),
        "{trace:?}"
    );
    assert_refused(
        &sim(&["--seed", "1", "--trace-filter", "who=me"]),
        "--trace-filter key 'who'",
    );
}

#[test]
fn pipes_are_named_alike_by_every_oracle() {
    // A pipe lost wake-up: the liveness oracle and conservation name the same pipe.
    let dir = scratch("pipe-names");
    let o = sim(&[
        "sweep",
        "--scenario",
        "pipe-echo",
        "--plant",
        "pipe-lost-wakeup",
        "--seeds",
        "0..300",
        "--stop-at-first",
        "--reports",
        utf8(&dir),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let file = replay_files(&dir).into_iter().next().expect("a failure");
    let r = sim(&["replay", utf8(&file)]);
    let printed = stdout(&r);
    let violations: Vec<&str> = printed
        .lines()
        .filter(|l| l.starts_with("violation: "))
        .collect();
    let lost = violations
        .iter()
        .find(|l| l.contains("lost wake-up"))
        .expect("a lost wake-up");
    let pipe = lost
        .split("on pipe ")
        .nth(1)
        .and_then(|r| r.split('\'').next())
        .expect("a pipe id");
    // The parked thread is named by the same id.
    assert!(
        lost.contains(&format!("recv{pipe}"))
            || lost.contains(&format!("send{pipe}"))
            || lost.contains("main")
            || lost.contains("relay"),
        "{lost}"
    );
    for v in violations.iter().filter(|l| l.contains("[conservation]")) {
        assert!(v.contains("pipe "), "{v}");
        assert!(
            !v.contains("pipe 0 "),
            "the control pipe carries no workload bytes: {v}"
        );
    }
    // Every violation points at a trace line.
    assert!(
        violations.iter().all(|v| v.contains("trace line")),
        "{violations:?}"
    );
}
