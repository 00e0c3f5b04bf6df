//! `sim` never panics on its user, never hangs or runs away with memory on bad input, and a
//! sweep never loses a result: the checks the command's contract names, through the real
//! binary.

mod common;

use common::*;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Runs `sim args` under `limit`, returning its exit code, wall time and peak memory (KB).
fn timed(args: &[&str], limit: Duration) -> (Option<i32>, Duration, u64, String) {
    let started = Instant::now(); // determinism-ok: the test times a child process, not a simulated run
    let mut child = command()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sim starts");
    let pid = child.id();
    let mut peak = 0u64;
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code();
        }
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status"))
            && let Some(kb) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kb);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sim {args:?} ran past {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    (code, started.elapsed(), peak, err)
}

#[test]
fn a_closed_pipe_ends_output_quietly() {
    // `sim --seed 1 --trace | head -1`: the reader goes away after one line.
    let mut child = command()
        .args(["--seed", "1", "--trace"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sim starts");
    let mut out = child.stdout.take().expect("stdout");
    let mut first = [0u8; 16];
    use std::io::Read;
    let n = out.read(&mut first).expect("reads");
    assert!(n > 0);
    drop(out);
    let o = child.wait_with_output().expect("sim ends");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("Broken pipe"), "{}", stderr(&o));
}

#[test]
fn huge_numbers_are_refused_at_once() {
    for (args, want) in [
        (
            vec![
                "--seed",
                "1",
                "--pct-depth",
                "4294967295",
                "--strategy",
                "pct",
            ],
            "PCT depth 4294967295 is out of range",
        ),
        (
            vec!["--seed", "1", "--pct-depth", "1000000", "--strategy", "pct"],
            "step budget",
        ),
        (
            vec!["--seed", "1", "--pct-depth", "0", "--strategy", "pct"],
            "PCT depth 0",
        ),
        (
            vec![
                "sweep",
                "--scenario",
                "mailbox",
                "--seeds",
                "0..2",
                "--jobs",
                "100000000",
            ],
            "--jobs 100000000",
        ),
        (
            vec![
                "sweep",
                "--scenario",
                "mailbox",
                "--seeds",
                "0..2",
                "--jobs",
                "0",
            ],
            "--jobs 0",
        ),
    ] {
        let (code, took, peak, err) = timed(&args, Duration::from_secs(10));
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(took < Duration::from_secs(1), "{args:?} took {took:?}");
        assert!(peak < 100 * 1024, "{args:?} peaked at {peak} KB");
    }
}

#[test]
fn pct_depth_within_the_budget_runs_fast() {
    // A depth equal to the step budget is allowed and costs O(d log d).
    let (code, took, peak, err) = timed(
        &["--seed", "1", "--strategy", "pct", "--pct-depth", "100000"],
        Duration::from_secs(20),
    );
    assert!(code == Some(0) || code == Some(1), "{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(peak < 100 * 1024, "peaked at {peak} KB");
}

#[test]
fn endless_or_huge_replay_files_are_refused_with_bounded_memory() {
    let (code, took, peak, err) = timed(&["replay", "/dev/zero"], Duration::from_secs(10));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("larger than"), "{err}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(peak < 100 * 1024, "peaked at {peak} KB");
    let dir = scratch("huge-replay");
    // A replay file whose PCT depth would run for ever is refused before it runs.
    let f = dir.join("deep.json");
    let o = sim(&["--seed", "3", "--strategy", "pct", "--save", utf8(&f)]);
    assert!(o.status.code().is_some_and(|c| c <= 1), "{}", stderr(&o));
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&f).expect("read")).expect("json");
    v["pct_depth"] = serde_json::json!(1_000_000_000u64);
    std::fs::write(&f, v.to_string()).expect("write");
    let (code, took, _, err) = timed(&["replay", utf8(&f)], Duration::from_secs(10));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("PCT depth 1000000000"), "{err}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[test]
fn an_unwritable_report_path_is_named_before_any_seed_runs() {
    let (code, took, _, err) = timed(
        &[
            "sweep",
            "--scenario",
            "mailbox",
            "--seeds",
            "0..2000",
            "--reports",
            "/proc/x",
        ],
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("/proc/x"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    // Not one seed ran: refused at once.
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[test]
fn a_sweep_stopped_by_sigint_keeps_its_failures_and_says_so() {
    let dir = scratch("sigint");
    let mut child = command()
        .args([
            "sweep",
            "--scenario",
            "litmus-sb",
            "--mem",
            "tso",
            "--seeds",
            "0..100000000",
            "--reports",
            utf8(&dir),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sim starts");
    // Wait until it has found failures (their lines come out at once).
    let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut seen = Vec::new();
    use std::io::BufRead;
    while seen.len() < 3 {
        let mut line = String::new();
        if out.read_line(&mut line).expect("reads") == 0 {
            break;
        }
        if line.starts_with("fail seed=") {
            seen.push(line);
        }
    }
    assert_eq!(seen.len(), 3, "no failures printed before the interrupt");
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let mut rest = String::new();
    use std::io::Read;
    out.read_to_string(&mut rest).expect("reads");
    let o = child.wait_with_output().expect("ends");
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(rest.contains("status=interrupted"), "{rest}");
    let summaries = files_where(&dir, |p| p.ends_with("summary.md"));
    assert_eq!(summaries.len(), 1);
    let md = std::fs::read_to_string(&summaries[0]).expect("summary");
    assert!(md.contains("interrupted") && md.contains("SIGINT"), "{md}");
    // Every failure printed has its replay file, whole.
    for line in &seen {
        let seed = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("seed="))
            .expect("a seed");
        let file = summaries[0]
            .parent()
            .expect("dir")
            .join(format!("seed-{seed}.json"));
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).expect("replay file"))
                .expect("whole JSON");
        assert_eq!(v["verdict"], "fail");
        assert!(
            md.contains(&format!("| {seed} |")),
            "seed {seed} not in {md}"
        );
    }
}

#[test]
fn summary_counts_failing_seeds_and_names_replay_commands() {
    let dir = scratch("summary");
    let o = sim(&[
        "sweep",
        "--scenario",
        "mailbox",
        "--plant",
        "mailbox-acqrel-fence",
        "--seeds",
        "0..200",
        "--reports",
        utf8(&dir),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let printed = stdout(&o);
    let failing: Vec<&str> = printed
        .lines()
        .filter(|l| l.starts_with("fail seed="))
        .collect();
    let md = std::fs::read_to_string(&files_where(&dir, |p| p.ends_with("summary.md"))[0])
        .expect("summary");
    assert!(md.contains("- status: complete"), "{md}");
    assert!(
        md.contains(&format!("- failing seeds: {}", failing.len())),
        "{md}"
    );
    // Per oracle, the failing seeds are never more than the seeds that failed.
    for row in md
        .lines()
        .filter(|l| l.starts_with("| liveness") || l.starts_with("| conservation"))
    {
        let seeds: usize = row
            .split('|')
            .nth(2)
            .and_then(|c| c.trim().parse().ok())
            .expect("count");
        assert!(seeds <= failing.len(), "{row}");
    }
    assert!(md.contains("`sim replay "), "{md}");
    // Each printed failure is followed by its replay command.
    assert!(stdout(&o).contains("  sim replay "), "{}", stdout(&o));
}
