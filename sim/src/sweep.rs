//! `sim sweep`: runs a seed range across worker threads. Each seed is an independent simulated
//! run (its own kernel, its own decision stream), so running them in parallel gives exactly the
//! results of running them one by one; results are gathered and reported in seed order.

use crate::cli::{SweepArgs, UsageError, spec_from, verdict_code};
use crate::replay_file::{ReplayFile, build_info};
use scenarios::{RunReport, RunSpec};
use simkit::DecisionMode;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub fn parse_seeds(s: &str) -> Result<(u64, u64), UsageError> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| UsageError(format!("--seeds '{s}' is not a range A..B (B exclusive)")))?;
    let a: u64 = a
        .trim()
        .parse()
        .map_err(|_| UsageError(format!("--seeds '{s}': '{a}' is not a seed number")))?;
    let b: u64 = b
        .trim()
        .parse()
        .map_err(|_| UsageError(format!("--seeds '{s}': '{b}' is not a seed number")))?;
    if a >= b {
        return Err(UsageError(format!(
            "--seeds {a}..{b} is empty or reversed (B must be greater than A)"
        )));
    }
    Ok((a, b))
}

/// One seed's result, kept small: only failures keep a replay record.
struct SeedResult {
    seed: u64,
    trace_hash: u64,
    first_violation: Option<String>,
    oracles: Vec<&'static str>,
    replay: Option<ReplayFile>,
}

fn run_seed(spec: &RunSpec, seed: u64) -> Result<SeedResult, String> {
    let spec = RunSpec {
        source: DecisionMode::Seeded(seed),
        ..spec.clone()
    };
    let report: RunReport = scenarios::run(&spec).map_err(|e| e.to_string())?;
    let failed = !report.passed();
    Ok(SeedResult {
        seed,
        trace_hash: report.trace_hash,
        first_violation: report.violations.first().map(ToString::to_string),
        oracles: report.violations.iter().map(|v| v.oracle).collect(),
        replay: failed.then(|| ReplayFile::from_report(&report, spec.pct_depth)),
    })
}

/// Runs `spec` over `seeds` on `jobs` threads, reporting progress through `done`.
fn run_parallel(
    spec: &RunSpec,
    seeds: (u64, u64),
    jobs: usize,
    stop_at_first: bool,
    done: &AtomicU64,
) -> Result<Vec<SeedResult>, String> {
    let next = AtomicU64::new(seeds.0);
    // With `stop_at_first`, no seed above the smallest failing seed found so far is started.
    let limit = AtomicU64::new(seeds.1);
    let results = Mutex::new(Vec::new());
    let error = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                let mut mine = Vec::new();
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= limit.load(Ordering::Relaxed) {
                        break;
                    }
                    match run_seed(spec, seed) {
                        Ok(r) => {
                            if stop_at_first && r.first_violation.is_some() {
                                limit.fetch_min(seed + 1, Ordering::Relaxed);
                            }
                            mine.push(r);
                        }
                        Err(e) => {
                            *error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                            limit.store(0, Ordering::Relaxed);
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                results
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(mine);
            });
        }
    });
    if let Some(e) = error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.sort_by_key(|r| r.seed);
    // Results past the first failure are dropped, so the outcome does not depend on the jobs.
    if stop_at_first && let Some(first) = results.iter().position(|r| r.first_violation.is_some()) {
        results.truncate(first + 1);
    }
    Ok(results)
}

fn progress_bar(done: u64, total: u64, started: Instant) {
    let width = 40usize;
    let filled = ((done as f64 / total as f64) * width as f64) as usize;
    let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
    eprint!(
        "\r[{}{}] {done}/{total} {rate:.0} seeds/s ",
        "#".repeat(filled),
        ".".repeat(width - filled.min(width))
    );
    let _ = std::io::stderr().flush();
}

pub fn run(args: SweepArgs) -> Result<ExitCode, UsageError> {
    let seeds = parse_seeds(&args.seeds)?;
    let spec = spec_from(
        Some(args.scenario.clone()),
        &args.shape,
        DecisionMode::Seeded(seeds.0),
    )?;
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let total = seeds.1 - seeds.0;
    let done = AtomicU64::new(0);
    let started = Instant::now(); // determinism-ok: wall time of the sweep harness, outside every simulated run.
    let tty = std::io::stderr().is_terminal();
    let results = std::thread::scope(|scope| {
        let worker = scope.spawn(|| run_parallel(&spec, seeds, jobs, args.stop_at_first, &done));
        while tty && !worker.is_finished() {
            progress_bar(done.load(Ordering::Relaxed), total, started);
            std::thread::sleep(Duration::from_millis(100));
        }
        worker.join()
    });
    let results = match results {
        Ok(r) => r.map_err(UsageError)?,
        Err(_) => {
            return Err(UsageError(
                "a sweep worker panicked outside any simulated run".into(),
            ));
        }
    };
    if tty {
        progress_bar(total, total, started);
        eprintln!();
    }
    let wall = started.elapsed();
    let failures: Vec<&SeedResult> = results
        .iter()
        .filter(|r| r.first_violation.is_some())
        .collect();
    let dir = write_report(&args, &spec, seeds, &results, wall)
        .map_err(|e| UsageError(format!("writing report: {e}")))?;
    let rate = results.len() as f64 / wall.as_secs_f64().max(1e-9);
    for f in failures.iter().take(5) {
        println!(
            "fail seed={} trace={:016x} {}",
            f.seed,
            f.trace_hash,
            f.first_violation.as_deref().unwrap_or("")
        );
    }
    if failures.len() > 5 {
        println!(
            "... and {} more failing seeds (see the report)",
            failures.len() - 5
        );
    }
    println!("report: {}", dir.join("summary.md").display());
    println!(
        "sweep scenario={} strategy={} mem={} seeds={}..{} ran={} failures={} first_failure={} seeds_per_sec={rate:.1}",
        spec.scenario,
        spec.strategy.name(),
        failures
            .first()
            .and_then(|f| f.replay.as_ref())
            .map_or_else(
                || spec
                    .mem
                    .map_or_else(|| "default".to_string(), |m| m.name().to_string()),
                |r| r.mem.clone()
            ),
        seeds.0,
        seeds.1,
        results.len(),
        failures.len(),
        failures
            .first()
            .map_or_else(|| "none".to_string(), |f| f.seed.to_string()),
    );
    Ok(verdict_code(failures.is_empty()))
}

/// A UTC timestamp, `YYYYMMDD-HHMMSS`, for report directory names.
fn stamp() -> String {
    let secs = SystemTime::now() // determinism-ok: names a report directory only
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn unique_dir(base: &Path) -> std::io::Result<PathBuf> {
    for n in 0.. {
        let candidate = if n == 0 {
            base.to_path_buf()
        } else {
            PathBuf::from(format!("{}-{n}", base.display()))
        };
        match std::fs::create_dir(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    unreachable!("an unbounded range always yields a candidate")
}

fn write_report(
    args: &SweepArgs,
    spec: &RunSpec,
    seeds: (u64, u64),
    results: &[SeedResult],
    wall: Duration,
) -> std::io::Result<PathBuf> {
    let parent = args.reports.join(&spec.scenario);
    std::fs::create_dir_all(&parent)?;
    let dir = unique_dir(&parent.join(format!(
        "{}-{}-seeds{}-{}",
        stamp(),
        spec.strategy.name(),
        seeds.0,
        seeds.1
    )))?;
    let failures: Vec<&SeedResult> = results
        .iter()
        .filter(|r| r.first_violation.is_some())
        .collect();
    for f in &failures {
        if let Some(replay) = &f.replay {
            replay.write(&dir.join(format!("seed-{}.json", f.seed)))?;
        }
    }
    let (commit, rustc) = build_info();
    let mut by_oracle: BTreeMap<&str, u64> = BTreeMap::new();
    for f in &failures {
        for o in &f.oracles {
            *by_oracle.entry(o).or_default() += 1;
        }
    }
    let mut md = String::new();
    let _ = writeln!(md, "# Sweep of `{}`\n", spec.scenario);
    let mut cmd = format!(
        "sim sweep --scenario {} --seeds {}..{} --strategy {}",
        spec.scenario,
        seeds.0,
        seeds.1,
        spec.strategy.name()
    );
    if let Some(d) = spec.pct_depth {
        let _ = write!(cmd, " --pct-depth {d}");
    }
    if let Some(m) = spec.mem {
        let _ = write!(cmd, " --mem {m}");
    }
    if let Some(p) = &spec.plant {
        let _ = write!(cmd, " --plant {p}");
    }
    let _ = writeln!(md, "- command: `{cmd}`");
    let _ = writeln!(md, "- build: commit `{commit}`, `{rustc}`");
    let _ = writeln!(md, "- seeds run: {}", results.len());
    let _ = writeln!(md, "- failures: {}", failures.len());
    let _ = writeln!(
        md,
        "- first failing seed: {}",
        failures
            .first()
            .map_or_else(|| "none".to_string(), |f| f.seed.to_string())
    );
    let _ = writeln!(
        md,
        "- wall time: {:.2} s ({:.1} seeds/s)\n",
        wall.as_secs_f64(),
        results.len() as f64 / wall.as_secs_f64().max(1e-9)
    );
    if !by_oracle.is_empty() {
        let _ = writeln!(
            md,
            "## Violations by oracle\n\n| oracle | failing seeds |\n|---|---|"
        );
        for (o, n) in &by_oracle {
            let _ = writeln!(md, "| {o} | {n} |");
        }
        let _ = writeln!(md);
        let _ = writeln!(
            md,
            "## Failing seeds\n\nReplay one with `sim replay <file> --trace`.\n\n| seed | trace | first violation | replay file |\n|---|---|---|---|"
        );
        for f in &failures {
            let _ = writeln!(
                md,
                "| {} | `{:016x}` | {} | `seed-{}.json` |",
                f.seed,
                f.trace_hash,
                f.first_violation
                    .as_deref()
                    .unwrap_or("")
                    .replace('|', "\\|"),
                f.seed
            );
        }
    }
    std::fs::write(dir.join("summary.md"), md)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_ranges() {
        assert_eq!(parse_seeds("0..10").ok(), Some((0, 10)));
        assert!(parse_seeds("10..10").is_err());
        assert!(parse_seeds("10..3").is_err());
        assert!(parse_seeds("x..3").is_err());
        assert!(parse_seeds("5").is_err());
    }

    #[test]
    fn stamp_shape() {
        let s = stamp();
        assert_eq!(s.len(), 15, "{s}");
        assert_eq!(&s[8..9], "-");
    }
}
