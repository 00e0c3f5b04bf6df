//! The `sim` command's contract, exercised through the real binary: exit codes, the last line,
//! sweeps and their reports, replay files, the determinism check, and bad input.

mod common;
use common::{files_where, last_line, replay_files, scratch, sim, stderr, stdout};
use std::path::Path;
use std::process::Output;

fn is_verdict_line(line: &str, seed: &str, scenario: &str) -> bool {
    let f: Vec<&str> = line.split(' ').collect();
    f.len() == 6
        && f[0] == format!("seed={seed}")
        && f[1] == format!("scenario={scenario}")
        && (f[2] == "strategy=random" || f[2] == "strategy=pct")
        && f[3]
            .strip_prefix("events=")
            .is_some_and(|n| n.parse::<u64>().is_ok())
        && f[4]
            .strip_prefix("trace=")
            .is_some_and(|h| h.len() == 16 && u64::from_str_radix(h, 16).is_ok())
        && (f[5] == "verdict=pass" || f[5] == "verdict=fail")
}

#[test]
fn default_run_is_stable_and_passes() {
    let a = sim(&["--seed", "42"]);
    let b = sim(&["--seed", "42"]);
    assert_eq!(a.status.code(), Some(0), "{}", stderr(&a));
    assert_eq!(last_line(&a), last_line(&b));
    assert!(
        is_verdict_line(&last_line(&a), "42", "mailbox"),
        "{}",
        last_line(&a)
    );
    assert!(last_line(&a).ends_with("verdict=pass"));
}

#[test]
fn trace_flag_prints_trace_lines() {
    let o = sim(&["--seed", "1", "--scenario", "litmus-sb", "--trace"]);
    let out = stdout(&o);
    assert!(
        out.lines().any(|l| l.starts_with("t=0 kernel spawn T0")),
        "{out}"
    );
    // The snapshot holds the same run.
    let snap = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../snapshots/litmus-sb-seed1.snap"
    ))
    .expect("snapshot exists");
    assert!(
        snap.contains(&last_line(&o)),
        "snapshot and CLI disagree on seed 1"
    );
}

#[test]
fn lists_have_the_documented_columns() {
    let list = stdout(&sim(&["--list"]));
    for name in [
        "mailbox",
        "litmus-sb",
        "litmus-sb-fenced",
        "litmus-mp",
        "litmus-lb",
        "litmus-iriw",
        "calib-depth2",
    ] {
        assert!(
            list.lines().any(|l| l.starts_with(&format!("{name}  "))),
            "{name} missing from:\n{list}"
        );
    }
    let bugs = stdout(&sim(&["--list-bugs"]));
    assert!(bugs.lines().count() >= 3);
    for line in bugs.lines() {
        let cols: Vec<&str> = line.splitn(3, "  ").collect();
        assert_eq!(cols.len(), 3, "{line}");
        assert!(
            list.lines()
                .any(|l| l.starts_with(&format!("{}  ", cols[1]))),
            "bug names unknown scenario: {line}"
        );
    }
}

#[test]
fn sweep_finds_store_buffering_under_tso_and_replay_reproduces_it() {
    let dir = scratch("sb");
    let o = sim(&[
        "sweep",
        "--scenario",
        "litmus-sb",
        "--mem",
        "tso",
        "--seeds",
        "0..1000",
        "--reports",
        dir.to_str().expect("utf8"),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let last = last_line(&o);
    assert!(
        last.contains("failures=") && !last.contains("failures=0 "),
        "{last}"
    );
    let files = replay_files(&dir);
    assert!(!files.is_empty());
    let summary = files[0].parent().expect("dir").join("summary.md");
    let md = std::fs::read_to_string(summary).expect("summary written");
    assert!(
        md.contains("first failing seed") && md.contains("litmus-sc"),
        "{md}"
    );
    // Replay: same verdict and same trace hash as recorded.
    let recorded: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files[0]).expect("read")).expect("json");
    let replay = sim(&["replay", files[0].to_str().expect("utf8")]);
    assert_eq!(replay.status.code(), Some(1), "{}", stderr(&replay));
    let line = last_line(&replay);
    assert!(
        line.contains(&format!(
            "trace={}",
            recorded["trace_hash"].as_str().expect("hash")
        )),
        "{line}"
    );
    assert!(line.ends_with("verdict=fail"));
    assert!(recorded["commit"].as_str().is_some_and(|c| !c.is_empty()));
    assert!(
        recorded["rustc"]
            .as_str()
            .is_some_and(|c| c.starts_with("rustc"))
    );
}

/// Exit code of a sweep over `seeds` with its report in `dir`.
fn sweep_code(scenario: &str, mem: &str, seeds: &str, dir: &Path) -> Option<i32> {
    let dir = dir.to_str().expect("utf8");
    sim(&[
        "sweep",
        "--scenario",
        scenario,
        "--mem",
        mem,
        "--seeds",
        seeds,
        "--reports",
        dir,
    ])
    .status
    .code()
}

#[test]
fn fenced_and_mp_sweeps_match_the_model() {
    let dir = scratch("fenced");
    assert_eq!(
        sweep_code("litmus-sb-fenced", "tso", "0..10000", &dir),
        Some(0)
    );
    assert_eq!(sweep_code("litmus-mp", "tso", "0..10000", &dir), Some(0));
    assert_eq!(
        sweep_code("litmus-mp", "relaxed", "0..10000", &dir),
        Some(1)
    );
}

#[test]
fn parallel_sweep_equals_serial_sweep() {
    let dir = scratch("par");
    let d = dir.to_str().expect("utf8");
    let serial = sim(&[
        "sweep",
        "--scenario",
        "mailbox",
        "--plant",
        "mailbox-acqrel-fence",
        "--seeds",
        "0..300",
        "--jobs",
        "1",
        "--reports",
        d,
    ]);
    let parallel = sim(&[
        "sweep",
        "--scenario",
        "mailbox",
        "--plant",
        "mailbox-acqrel-fence",
        "--seeds",
        "0..300",
        "--jobs",
        "2",
        "--reports",
        d,
    ]);
    // Failures are printed as they are found (in any order with two workers); what each seed
    // gave, and the totals, are the same.
    let strip = |o: &Output| {
        let mut lines: Vec<String> = stdout(o)
            .lines()
            .filter(|l| !l.starts_with("report:") && !l.starts_with("  sim replay"))
            .map(|l| l.split(" seeds_per_sec").next().unwrap_or("").to_string())
            .collect();
        lines.sort();
        lines
    };
    assert_eq!(strip(&serial), strip(&parallel));
    assert_eq!(serial.status.code(), Some(1));
}

#[test]
fn check_determinism_passes() {
    for scenario in ["mailbox", "litmus-iriw", "calib-depth2"] {
        let o = sim(&[
            "--check-determinism",
            "--seed",
            "7",
            "--scenario",
            scenario,
            "--mem",
            "relaxed",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
        assert!(stdout(&o).contains("deterministic: 2 runs"));
        assert!(is_verdict_line(&last_line(&o), "7", scenario));
    }
}

#[test]
fn bad_input_is_one_clear_line_and_exit_2() {
    let dir = scratch("bad");
    let corrupt = dir.join("corrupt.json");
    std::fs::write(&corrupt, "{ not json").expect("write");
    let foreign = dir.join("foreign.json");
    std::fs::write(&foreign, r#"{"name": "package.json", "version": "1.0.0"}"#).expect("write");
    let missing = dir.join("missing.json");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["replay", corrupt.to_str().expect("utf8")],
            "not valid JSON",
        ),
        (
            vec!["replay", foreign.to_str().expect("utf8")],
            "not a simkit replay file",
        ),
        (
            vec!["replay", missing.to_str().expect("utf8")],
            "cannot read replay file",
        ),
        (
            vec!["--seed", "1", "--scenario", "no-such"],
            "unknown scenario 'no-such'",
        ),
        (
            vec!["--seed", "1", "--plant", "no-such-bug"],
            "unknown planted bug 'no-such-bug'",
        ),
        (
            vec![
                "--seed",
                "1",
                "--scenario",
                "litmus-sb",
                "--plant",
                "mailbox-lost-wakeup",
            ],
            "belongs to scenario 'mailbox'",
        ),
        (
            vec!["sweep", "--scenario", "mailbox", "--seeds", "5..5"],
            "empty or reversed",
        ),
        (
            vec!["sweep", "--scenario", "mailbox", "--seeds", "9..2"],
            "empty or reversed",
        ),
        (
            vec!["sweep", "--scenario", "mailbox", "--seeds", "abc"],
            "not a range",
        ),
        (
            vec!["sweep", "--scenario", "nope", "--seeds", "0..2"],
            "unknown scenario",
        ),
        (vec![], "no --seed"),
    ];
    for (args, want) in cases {
        let o = sim(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: stderr was {err:?}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: not one line: {err:?}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    // Usage errors from the argument parser also exit 2.
    let o = sim(&["--seed", "1", "--mem", "weird"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!stderr(&o).contains("panicked"));
}

#[test]
fn tampered_replay_file_reports_divergence() {
    let dir = scratch("tamper");
    let o = sim(&[
        "sweep",
        "--scenario",
        "litmus-sb",
        "--mem",
        "tso",
        "--seeds",
        "0..50",
        "--reports",
        dir.to_str().expect("utf8"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let file = replay_files(&dir)
        .into_iter()
        .next()
        .expect("a failing seed");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("json");
    v["trace_hash"] = serde_json::Value::String("0000000000000000".into());
    let tampered = dir.join("tampered.json");
    std::fs::write(&tampered, v.to_string()).expect("write");
    let r = sim(&["replay", tampered.to_str().expect("utf8")]);
    assert_eq!(r.status.code(), Some(3));
    assert!(stderr(&r).contains("DIVERGED"), "{}", stderr(&r));
}

#[test]
fn shrink_keeps_the_failure_and_never_grows_the_stream() {
    let dir = scratch("shrink");
    let o = sim(&[
        "sweep",
        "--scenario",
        "mailbox",
        "--plant",
        "mailbox-acqrel-fence",
        "--seeds",
        "0..200",
        "--reports",
        dir.to_str().expect("utf8"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let file = replay_files(&dir)
        .into_iter()
        .next()
        .expect("a failing seed");
    let out = dir.join("shrunk.json");
    let s = sim(&[
        "shrink",
        file.to_str().expect("utf8"),
        "--out",
        out.to_str().expect("utf8"),
    ]);
    assert_eq!(s.status.code(), Some(0), "{}", stderr(&s));
    let read = |p: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).expect("read")).expect("json")
    };
    let (before, after) = (read(&file), read(&out));
    let len = |v: &serde_json::Value, k: &str| v[k].as_str().map_or(0, str::len);
    assert!(len(&after, "decisions_hex") <= len(&before, "consumed_decisions_hex"));
    assert!(after["seed"].is_null());
    // The shrunk file replays to the same failure and hash.
    let r = sim(&["replay", out.to_str().expect("utf8")]);
    assert_eq!(r.status.code(), Some(1), "{}", stderr(&r));
    assert!(last_line(&r).contains(&format!(
        "trace={}",
        after["trace_hash"].as_str().expect("hash")
    )));
    assert!(stdout(&r).contains("[liveness]"));
}

#[test]
fn stop_at_first_reports_the_smallest_failing_seed_for_any_job_count() {
    let dir = scratch("first");
    let d = dir.to_str().expect("utf8");
    let first_of = |o: &Output| {
        last_line(o)
            .split("first_failure=")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .map(str::to_string)
    };
    let full = sim(&[
        "sweep",
        "--scenario",
        "litmus-sb",
        "--mem",
        "tso",
        "--seeds",
        "0..400",
        "--jobs",
        "1",
        "--reports",
        d,
    ]);
    for jobs in ["1", "2"] {
        let o = sim(&[
            "sweep",
            "--scenario",
            "litmus-sb",
            "--mem",
            "tso",
            "--seeds",
            "0..400",
            "--stop-at-first",
            "--jobs",
            jobs,
            "--reports",
            d,
        ]);
        assert_eq!(o.status.code(), Some(1));
        assert_eq!(first_of(&o), first_of(&full), "{}", last_line(&o));
        assert!(last_line(&o).contains("failures=1 "), "{}", last_line(&o));
    }
}

#[test]
fn hardware_runs_judge_real_engines_and_refuse_what_has_no_hardware_form() {
    let reports = scratch("hw");
    let dir = reports.to_string_lossy().into_owned();
    let out = sim(&["hw", "--scenario", "pipe-hostile", "--reports", &dir]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no hardware form yet"),
        "{}",
        stderr(&out)
    );
    let out = sim(&["hw", "--scenario", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    let out = sim(&[
        "hw",
        "--scenario",
        "cells-siblings",
        "--iterations",
        "3",
        "--reports",
        &dir,
    ]);
    if cfg!(feature = "wasmtime") {
        assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
        let last = last_line(&out);
        assert!(
            last.starts_with("seed=2 scenario=cells-siblings strategy=hw events=")
                && last.ends_with("verdict=pass"),
            "{last}"
        );
        let summaries = files_where(&reports, |p| p.ends_with("summary.md"));
        assert_eq!(summaries.len(), 1);
    } else {
        assert_eq!(out.status.code(), Some(2));
        assert!(stderr(&out).contains("--features wasmtime"));
    }
}

/// The pipe-echo guest in a real vCPU, against the real monitor: clean runs pass, the guest's
/// planted wrap-around bug is caught by the echo oracle from the bytes that come back, and its
/// lost wake-up by the liveness check. Needs /dev/kvm; where it is absent the command says so
/// with exit 2.
#[test]
fn pipe_echo_runs_in_a_kvm_vcpu_and_its_oracles_see_planted_bugs() {
    let reports = scratch("hw-pipes");
    let dir = reports.to_string_lossy().into_owned();
    let out = sim(&[
        "hw",
        "--scenario",
        "pipe-echo",
        "--iterations",
        "20",
        "--reports",
        &dir,
    ]);
    if std::fs::File::open("/dev/kvm").is_err() {
        eprintln!("skipped: /dev/kvm cannot be opened here");
        assert_eq!(out.status.code(), Some(2));
        assert!(stderr(&out).contains("/dev/kvm"), "{}", stderr(&out));
        return;
    }
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let last = last_line(&out);
    assert!(
        last.starts_with("seed=19 scenario=pipe-echo strategy=hw events=")
            && last.ends_with("verdict=pass"),
        "{last}"
    );
    let out = sim(&[
        "hw",
        "--scenario",
        "pipe-echo",
        "--plant",
        "pipe-wrap-off-by-one",
        "--iterations",
        "50",
        "--reports",
        &dir,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let found = stdout(&out);
    assert!(
        found.contains("[conservation]") || found.contains("[frame-integrity]"),
        "{found}"
    );
    // The lost wake-up is a race between the guest's check and its halt; the monitor's
    // interrupt has to land in between, which seeded jitter makes likely within this budget.
    let out = sim(&[
        "hw",
        "--scenario",
        "pipe-echo",
        "--plant",
        "pipe-lost-wakeup",
        "--iterations",
        "300",
        "--reports",
        &dir,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("[liveness]"), "{}", stdout(&out));
    // The other two ring races the issue names, each within the budget docs/performance.md
    // states (found within 31 runs in every measured sweep of 1000).
    // Lost bytes show as missing from a stream, or as missing frames on a shared pipe.
    for (bug, oracles) in [
        (
            "pipe-eof-before-drain",
            &["[conservation]", "[frame-integrity]"][..],
        ),
        ("pipe-close-no-doorbell", &["[liveness]"][..]),
    ] {
        let out = sim(&[
            "hw",
            "--scenario",
            "pipe-echo",
            "--plant",
            bug,
            "--iterations",
            "300",
            "--reports",
            &dir,
        ]);
        assert_eq!(out.status.code(), Some(1), "{bug}: {}", stdout(&out));
        assert!(
            oracles.iter().any(|o| stdout(&out).contains(o)),
            "{bug}: {}",
            stdout(&out)
        );
    }
    // On x86 every store is a release, so a missing release cannot show.
    let out = sim(&[
        "hw",
        "--scenario",
        "pipe-echo",
        "--plant",
        "pipe-publish-before-data",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no hardware form"),
        "{}",
        stderr(&out)
    );
}

/// The pipe-file guest in a real vCPU, against the real monitor relaying to real files in a temp
/// directory: clean runs pass (every file's log replays against the reference model and the
/// model's contents equal the real file's), and the monitor's planted early free is seen (the
/// guest's ClosePipe for a freed pipe is refused, or a new pipe lands on one it still maps).
/// Needs /dev/kvm; where it is absent the command says so with exit 2.
#[test]
fn pipe_file_runs_in_a_kvm_vcpu_against_real_files() {
    let reports = scratch("hw-files");
    let dir = reports.to_string_lossy().into_owned();
    let out = sim(&[
        "hw",
        "--scenario",
        "pipe-file",
        "--iterations",
        "20",
        "--reports",
        &dir,
    ]);
    if std::fs::File::open("/dev/kvm").is_err() {
        eprintln!("skipped: /dev/kvm cannot be opened here");
        assert_eq!(out.status.code(), Some(2));
        assert!(stderr(&out).contains("/dev/kvm"), "{}", stderr(&out));
        return;
    }
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let last = last_line(&out);
    assert!(
        last.starts_with("seed=19 scenario=pipe-file strategy=hw events=")
            && last.ends_with("verdict=pass"),
        "{last}"
    );
    let summaries = files_where(&reports, |p| p.ends_with("summary.md"));
    assert_eq!(summaries.len(), 1);
    let out = sim(&[
        "hw",
        "--scenario",
        "pipe-file",
        "--plant",
        "pipe-free-before-close",
        "--iterations",
        "20",
        "--reports",
        &dir,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let found = stdout(&out);
    assert!(
        found.contains("[guest-error]") || found.contains("[region-ownership]"),
        "{found}"
    );
}

/// Conformance of pipe-file's hardware form with the simulation. The hardware run gets the plan
/// the simulation derives for the same seed (its first trace line lists the simulation's option
/// names and values). The bytes written cannot be compared with the simulated store: the
/// sessions' run-time choices come from the decision stream in the simulation and from a seeded
/// xorshift in the metal guest, so the two runs write different data. The conformance check is
/// instead the one both forms share: the real files hold exactly what the reference model
/// (`models::files::check_file`) computes from the guest's own log, which a passing verdict
/// states, and every planned file exists on disk after the run.
#[test]
fn pipe_file_hardware_runs_conform_to_the_simulated_plan_and_file_model() {
    if std::fs::File::open("/dev/kvm").is_err() {
        eprintln!("skipped: /dev/kvm cannot be opened here");
        return;
    }
    let reports = scratch("hw-files-conformance");
    let dir = reports.to_string_lossy().into_owned();
    for seed in ["1", "2", "3", "7", "11"] {
        let simulated = sim(&["--scenario", "pipe-file", "--seed", seed]);
        assert_eq!(simulated.status.code(), Some(0), "{}", stdout(&simulated));
        let options = stdout(&simulated)
            .lines()
            .find_map(|l| l.strip_prefix("options: ").map(str::to_string))
            .expect("an options line");
        let out = sim(&[
            "hw",
            "--scenario",
            "pipe-file",
            "--seed",
            seed,
            "--trace",
            "--reports",
            &dir,
        ]);
        assert_eq!(out.status.code(), Some(0), "seed {seed}: {}", stdout(&out));
        let text = stdout(&out);
        let plan = text
            .lines()
            .find_map(|l| l.strip_prefix("t=0 host plan "))
            .expect("a plan line");
        let mut files = 0;
        for option in plan.split(' ') {
            assert!(
                options.split(' ').any(|o| o == option),
                "seed {seed}: hardware plan {option} not in the simulation's options {options}"
            );
            if let Some(n) = option.strip_prefix("files=") {
                files = n.parse().expect("a file count");
            }
        }
        let stored = text.lines().filter(|l| l.contains(" file-stored ")).count();
        assert_eq!(stored, files, "seed {seed}: {text}");
        assert!(last_line(&out).ends_with("verdict=pass"), "seed {seed}");
    }
}

/// The pipe-tcp guest in a real vCPU: the monitor relays to real sockets on loopback, tokio
/// clients and servers talk to the guest, and the simulation's stream oracle compares both
/// ends' records. The planted relay bug (FIN before the ring is drained) loses bytes the oracle
/// sees missing at the peer.
#[test]
fn pipe_tcp_runs_in_a_kvm_vcpu_against_real_loopback_sockets() {
    let reports = scratch("hw-tcp");
    let dir = reports.display().to_string();
    let out = sim(&[
        "hw",
        "--scenario",
        "pipe-tcp",
        "--iterations",
        "20",
        "--reports",
        &dir,
    ]);
    if std::fs::File::open("/dev/kvm").is_err() {
        eprintln!("skipped: /dev/kvm cannot be opened here");
        assert_eq!(out.status.code(), Some(2));
        assert!(stderr(&out).contains("/dev/kvm"), "{}", stderr(&out));
        return;
    }
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let last = last_line(&out);
    assert!(
        last.starts_with("seed=19 scenario=pipe-tcp strategy=hw events=")
            && last.ends_with("verdict=pass"),
        "{last}"
    );
    let out = sim(&[
        "hw",
        "--scenario",
        "pipe-tcp",
        "--plant",
        "pipe-tcp-fin-before-drain",
        "--iterations",
        "200",
        "--reports",
        &dir,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("[conservation]"), "{}", stdout(&out));
}
