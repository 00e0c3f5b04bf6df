//! A sweep run as three shards, each in its own process, and merged with `sim merge`, equals the
//! same sweep run whole: the same failing seeds with the same traces and violations, the same
//! counts, the same replay files (but for the shard each names). And `sim merge` refuses what
//! is not one sweep's shards.

mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("readable")).expect("JSON")
}

/// The report directory the sweep printed (`report: DIR/summary.md`).
fn dir_of(o: &std::process::Output) -> PathBuf {
    let out = stdout(o);
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("report: "))
        .expect("a report line");
    Path::new(line).parent().expect("dir").to_path_buf()
}

fn sweep(reports: &Path, scenario: &str, seeds: &str, extra: &[&str]) -> std::process::Child {
    command()
        .args([
            "sweep",
            "--scenario",
            scenario,
            "--seeds",
            seeds,
            "--jobs",
            "1",
        ])
        .args(["--reports", utf8(reports)])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sim starts")
}

/// What must be equal between a merged and a whole sweep.
fn verdicts(summary: &Value) -> Value {
    serde_json::json!({
        "ran": summary["ran"],
        "failing": summary["failing"],
        "by_oracle": summary["by_oracle"],
        "failures": summary["failures"],
        "status": summary["status"],
        "seeds": summary["seeds"],
        "goals": summary["goals"],
        "faults": summary["faults"],
        "coverage": summary["coverage"]["features"],
    })
}

/// A replay file without the shard it names.
fn replay_content(path: &Path) -> Value {
    let mut v = json(path);
    if let Some(o) = v.as_object_mut() {
        o.remove("shard");
    }
    v
}

fn shards_merge_to_the_whole(scenario: &str, seeds: &str, extra: &[&str], expect_failures: bool) {
    let reports = scratch(&format!("shards-{scenario}"));
    let whole = sweep(&reports, scenario, seeds, extra);
    let shards: Vec<_> = (0..3)
        .map(|i| {
            let shard = format!("{i}/3");
            let mut args = extra.to_vec();
            args.extend(["--shard", &shard]);
            sweep(&reports, scenario, seeds, &args)
        })
        .collect();
    let code = if expect_failures { Some(1) } else { Some(0) };
    let whole = whole.wait_with_output().expect("ends");
    assert_eq!(whole.status.code(), code, "{}", stderr(&whole));
    let mut dirs = Vec::new();
    for s in shards {
        let o = s.wait_with_output().expect("ends");
        assert!(matches!(o.status.code(), Some(0 | 1)), "{}", stderr(&o));
        assert!(last_line(&o).contains("shard="), "{}", last_line(&o));
        dirs.push(dir_of(&o));
    }
    let whole_dir = dir_of(&whole);
    let merged_dir = reports.join("merged");
    let mut args = vec!["merge", "--out", utf8(&merged_dir)];
    args.extend(dirs.iter().map(|d| utf8(d)));
    let m = sim(&args);
    assert_eq!(m.status.code(), code, "{}", stderr(&m));
    let (a, b) = (
        json(&whole_dir.join("summary.json")),
        json(&merged_dir.join("summary.json")),
    );
    assert_eq!(verdicts(&a), verdicts(&b));
    assert!(a["coverage"]["features"].as_u64().unwrap_or(0) > 0);
    assert_eq!(
        json(&whole_dir.join("coverage.json")),
        json(&merged_dir.join("coverage.json"))
    );
    assert_eq!(
        a["failures"].as_array().map(Vec::len).unwrap_or(0) > 0,
        expect_failures
    );
    let names = |d: &Path| -> Vec<String> {
        replay_files(d)
            .iter()
            .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(names(&whole_dir), names(&merged_dir));
    for name in names(&whole_dir) {
        let (x, y) = (
            replay_content(&whole_dir.join(&name)),
            replay_content(&merged_dir.join(&name)),
        );
        assert_eq!(x, y, "{name}");
        assert!(
            json(&merged_dir.join(&name))["shard"].is_string(),
            "{name} names no shard"
        );
    }
    let _ = std::fs::remove_dir_all(&reports);
}

#[test]
fn three_shards_merge_to_the_whole_sweep_with_failures() {
    shards_merge_to_the_whole(
        "mailbox",
        "0..400",
        &["--plant", "mailbox-acqrel-fence"],
        true,
    );
}

#[test]
fn three_shards_merge_to_the_whole_sweep_without_failures() {
    shards_merge_to_the_whole("rpc-handoff", "0..150", &["--strategy", "pct"], false);
}

#[test]
fn merge_refuses_mixed_options_and_names_missing_shards() {
    let reports = scratch("shards-refused");
    let run = |extra: &[&str]| {
        let o = sweep(&reports, "mailbox", "0..30", extra)
            .wait_with_output()
            .expect("ends");
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        dir_of(&o)
    };
    let s0 = run(&["--shard", "0/3"]);
    let s1_pct = run(&["--shard", "1/3", "--strategy", "pct"]);
    let s2 = run(&["--shard", "2/3"]);
    let out = reports.join("merged");
    let merge = |dirs: &[&PathBuf]| {
        let mut args = vec!["merge", "--out", utf8(&out)];
        args.extend(dirs.iter().map(|d| utf8(d)));
        sim(&args)
    };
    assert_refused(&merge(&[&s0, &s1_pct, &s2]), "differ in strategy");
    assert_refused(&merge(&[&s0, &s2]), "missing shards: 1/3");
    assert_refused(&merge(&[&s0, &s0, &s2]), "shard 0/3 is given 2 times");
    // A shard of another build: its summary names another commit.
    let s1 = run(&["--shard", "1/3"]);
    let path = s1.join("summary.json");
    let mut v = json(&path);
    v["commit"] = Value::from("0123456789ab");
    std::fs::write(&path, v.to_string()).expect("rewritten");
    assert_refused(&merge(&[&s0, &s1, &s2]), "differ in commit");
    // A directory that is not a sweep's is named.
    assert_refused(&merge(&[&s0, &reports]), "summary.json");
    let _ = std::fs::remove_dir_all(&reports);
}
