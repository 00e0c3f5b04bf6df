//! `sim replay FILE`: reproduce a run from its replay file, and say whether it reproduced.
//!
//! Exit codes, for scripts: 0 the run passed, as recorded; 1 it failed exactly as recorded (a
//! line says `reproduced`); 3 it diverged from the file, and stderr names the first difference:
//! an option whose value differs, else the first trace line that differs from the recorded
//! run's (when the file kept its lines), else the trace hashes; 2 bad usage or a bad file.

use crate::exit::{DIVERGED, UsageError};
use crate::replay_file::{self, ReplayFile};
use crate::run::{Show, print_report};
use crate::{errln, json, outln};
use harness::{Catalogue, RunReport};
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;

/// The first option that differs between the file and this run, as a sentence.
fn option_difference(recorded: &[(String, String)], now: &[(String, String)]) -> Option<String> {
    let get = |list: &[(String, String)], k: &str| {
        list.iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.clone())
    };
    let mut names: Vec<&str> = recorded.iter().map(|(k, _)| k.as_str()).collect();
    for (k, _) in now {
        if !names.contains(&k.as_str()) {
            names.push(k);
        }
    }
    names.into_iter().find_map(|k| {
        let (a, b) = (get(recorded, k), get(now, k));
        (a != b).then(|| {
            format!(
                "option '{k}' differs: the file has {}, this run {}",
                a.map_or("none".to_string(), |v| format!("{k}={v}")),
                b.map_or("none".to_string(), |v| format!("{k}={v}")),
            )
        })
    })
}

/// What differs between the file and this run, first difference first.
fn differences(file: &ReplayFile, report: &RunReport) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(d) = option_difference(&file.options, &report.options) {
        out.push(d);
    }
    let hash = format!("{:016x}", report.trace_hash);
    if hash != file.trace_hash {
        let (commit, rustc) = replay_file::build_info();
        let lines = match (&file.trace, &report.trace_lines) {
            (Some(recorded), Some(now)) => {
                match crate::determinism::first_divergence(recorded, now) {
                    Some((i, a, b)) => format!(
                        "; first differing trace line {}: the file has '{}', this run '{}'",
                        i + 1,
                        a.map_or("<end of trace>", String::as_str),
                        b.map_or("<end of trace>", String::as_str)
                    ),
                    None => "; the kept trace lines are identical (the file's lines or hash were edited)".into(),
                }
            }
            _ => "; the file kept no trace lines (`sim --seed N --save FILE` keeps them)".into(),
        };
        out.push(format!(
            "trace differs: the file has trace={} (commit {}, {}), this run trace={hash} (commit {commit}, {rustc}){lines}",
            file.trace_hash, file.commit, file.rustc
        ));
    }
    let verdict = if report.passed() { "pass" } else { "fail" };
    if verdict != file.verdict {
        out.push(format!(
            "verdict differs: the file has {}, this run {verdict}",
            file.verdict
        ));
    }
    out
}

pub fn run(catalogue: &Catalogue, path: &Path, show: &Show) -> Result<ExitCode, UsageError> {
    show.filter()?;
    let file = ReplayFile::read(path)?;
    let mut spec = file.spec()?;
    if file.verdict == replay_file::CRASH {
        return crate::sweep::crash::replay(&file, &spec, path, show);
    }
    // Keep this run's lines when the file kept its own, to name the first that differs.
    spec.capture_trace = show.wants_trace() || file.trace.is_some();
    let report = harness::run(catalogue, &spec)?;
    let diffs = differences(&file, &report);
    let (outcome, code) = match (diffs.is_empty(), report.passed()) {
        (false, _) => ("diverged", ExitCode::from(DIVERGED)),
        (true, true) => ("reproduced", ExitCode::SUCCESS),
        (true, false) => ("reproduced", ExitCode::from(1)),
    };
    if show.json {
        let filter = show.filter()?;
        let trace = crate::run::shown_trace(&report, show, filter.as_ref());
        json::print(&json!({
            "type": "replay",
            "file": path.display().to_string(),
            "outcome": outcome,
            "differences": diffs,
            "run": json::run(&report, trace),
        }));
        return Ok(code);
    }
    if diffs.is_empty() {
        let what = if report.passed() {
            "the recorded pass".to_string()
        } else {
            format!(
                "the recorded failure ({} violation{})",
                report.violations.len(),
                if report.violations.len() == 1 {
                    ""
                } else {
                    "s"
                }
            )
        };
        outln!(
            "reproduced: {what} exactly, trace={:016x}",
            report.trace_hash
        );
    } else {
        errln!("sim: replay DIVERGED: {}", diffs[0]);
        for d in &diffs[1..] {
            errln!("sim: replay: also {d}");
        }
    }
    print_report(&report, show)?;
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_first_differing_option() {
        let o = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            option_difference(
                &o(&[("mem", "tso"), ("n", "3")]),
                &o(&[("mem", "tso"), ("n", "3")])
            ),
            None
        );
        let d = option_difference(
            &o(&[("mem", "tso"), ("n", "4")]),
            &o(&[("mem", "tso"), ("n", "3")]),
        )
        .expect("differs");
        assert!(
            d.contains("'n'") && d.contains("n=4") && d.contains("n=3"),
            "{d}"
        );
        let d = option_difference(
            &o(&[("mem", "tso")]),
            &o(&[("mem", "tso"), ("pct_depth", "3")]),
        )
        .expect("differs");
        assert!(d.contains("'pct_depth'") && d.contains("none"), "{d}");
    }
}
