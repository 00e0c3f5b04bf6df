//! Process isolation, through the example's own `sim`: a crash is one seed's failure and the
//! sweep goes on; a process per seed gives every seed the verdict it has alone.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_process-isolation"))
        .args(args)
        .output()
        .expect("the example's sim runs")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("isolation-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The one report directory under `reports`.
fn report_dir(reports: &Path, scenario: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(reports.join(scenario))
        .expect("scenario dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.remove(0)
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).expect("summary"))
        .expect("JSON")
}

fn failing_seeds(s: &serde_json::Value) -> Vec<u64> {
    s["failures"]
        .as_array()
        .expect("failures")
        .iter()
        .map(|f| f["seed"].as_u64().expect("seed"))
        .collect()
}

/// Seeds of `0..n` whose run, alone in a fresh process, does not pass.
fn failing_alone(scenario: &str, n: u64) -> Vec<u64> {
    (0..n)
        .filter(|s| {
            !sim(&["--scenario", scenario, "--seed", &s.to_string()])
                .status
                .success()
        })
        .collect()
}

#[test]
fn a_crash_is_one_seeds_failure_and_the_sweep_goes_on() {
    let reports = scratch("crash");
    let r = reports.to_str().expect("utf-8");
    let o = sim(&[
        "sweep",
        "--scenario",
        "frames",
        "--seeds",
        "0..40",
        "--reports",
        r,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let dir = report_dir(&reports, "frames");
    let s = summary(&dir);
    assert_eq!(s["status"]["state"], "complete");
    assert_eq!(s["ran"], 40);
    // Exactly the seeds that crash alone, each a crash with its replay file.
    let failing = failing_seeds(&s);
    assert!(!failing.is_empty());
    assert_eq!(failing, failing_alone("frames", 40));
    for f in s["failures"].as_array().expect("failures") {
        let first = f["first_violation"].as_str().expect("text");
        assert!(
            first.starts_with("[crash]") && first.contains("SIGABRT"),
            "{first}"
        );
        assert!(first.contains("frames: a frame announces"), "{first}");
    }
    // Replaying a crash runs it in a child again: reproduced, exit 1.
    let replay = dir.join(format!("seed-{}.json", failing[0]));
    let o = sim(&["replay", replay.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("reproduced: the run crashed its process again"));
    // In one process, the first crash ends the sweep with every later seed unrun.
    let o = sim(&[
        "sweep",
        "--scenario",
        "frames",
        "--seeds",
        "0..40",
        "--isolation",
        "thread",
        "--jobs",
        "1",
        "--reports",
        r,
    ]);
    assert!(!matches!(o.status.code(), Some(0 | 1)), "{:?}", o.status);
    let _ = std::fs::remove_dir_all(&reports);
}

#[test]
fn a_process_per_seed_gives_every_seed_its_own_verdict() {
    let reports = scratch("routes");
    let r = reports.to_str().expect("utf-8");
    let alone = failing_alone("routes", 30);
    assert!(
        alone.len() > 2,
        "the race is lost at several seeds alone: {alone:?}"
    );
    let o = sim(&[
        "sweep",
        "--scenario",
        "routes",
        "--seeds",
        "0..30",
        "--seeds-per-process",
        "1",
        "--reports",
        r,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert_eq!(
        failing_seeds(&summary(&report_dir(&reports, "routes"))),
        alone
    );
    // In one process the global cache is warm after the first seed: the race hides.
    std::fs::remove_dir_all(reports.join("routes")).expect("cleared");
    let o = sim(&[
        "sweep",
        "--scenario",
        "routes",
        "--seeds",
        "0..30",
        "--isolation",
        "thread",
        "--jobs",
        "1",
        "--reports",
        r,
    ]);
    assert!(o.status.code() == Some(0) || o.status.code() == Some(1));
    let hidden = failing_seeds(&summary(&report_dir(&reports, "routes")));
    assert!(
        hidden.len() <= 1 && hidden.len() < alone.len(),
        "{hidden:?} {alone:?}"
    );
    // The determinism check (a seed run twice in one process) sees the leak too.
    let o = sim(&[
        "--scenario",
        "routes",
        "--seed",
        &alone[0].to_string(),
        "--check-determinism",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    let _ = std::fs::remove_dir_all(&reports);
}
