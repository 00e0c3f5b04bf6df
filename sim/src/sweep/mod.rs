//! `sim sweep`: runs a seed range (or one shard of it) across workers, and never loses a
//! result.
//!
//! Each seed is an independent simulated run (its own kernel, its own decision stream), so the
//! verdict of every seed is the one a serial sweep gives. The report directory is made before
//! the first seed runs (a path that cannot be written is an error naming it, with nothing run).
//! A failing seed's replay file and its picture (`seed-N.html`) are written, atomically, by the
//! worker that found it, and its line is printed at once; `summary.json` and `summary.md` are
//! rewritten as the sweep goes, and a last time at its end, on SIGINT or SIGTERM (exit 130 or
//! 143) and on any error. With `--isolation process` each worker runs its seeds in a child
//! process (see `isolate.rs`).

pub mod crash;
pub mod isolate;
mod progress;
mod report_dir;
mod seed;

use crate::exit::{UsageError, verdict_code};
use crate::replay_file::ReplayFile;
use crate::run::{Shape, spec_from};
use crate::shard::Shard;
use crate::signals::Signals;
use crate::summary::{FORMAT, Status, SweepSummary, VERSION};
use crate::{errln, json, limits, outln};
use clap::Args;
use harness::Catalogue;
use seed::{Outcome, SeedContext};
use serde_json::json;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Failures that get a picture (`seed-N.html`) during a sweep; `sim report` draws any other.
pub const HTML_PER_SWEEP: u64 = 100;

/// Seeds a child process runs before a fresh one takes over, unless told otherwise. See
/// `docs/decisions.md` for the measured cost of isolation at this batch size.
pub const DEFAULT_SEEDS_PER_PROCESS: u64 = 1000;

#[derive(Args)]
pub struct SweepArgs {
    #[arg(long)]
    pub scenario: String,
    /// Seeds to run, `A..B` (B exclusive).
    #[arg(long, value_name = "A..B")]
    pub seeds: String,
    /// Run only shard I of N of the range: the seeds A+I, A+I+N, A+I+2N, ... (`sim merge`
    /// joins the shards' report directories).
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    #[command(flatten)]
    pub shape: Shape,
    /// Worker threads (default: every core; at most 8 per core).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Where each worker runs its seeds: in this process, or in a child process it replaces
    /// every --seeds-per-process seeds (a crash is then that seed's failure, not the sweep's end).
    #[arg(long, value_parser = ["thread", "process"], default_value = "process")]
    pub isolation: String,
    /// With --isolation process: seeds a child runs before a fresh one replaces it (1: a
    /// process per seed).
    #[arg(long, value_name = "K", default_value_t = DEFAULT_SEEDS_PER_PROCESS)]
    pub seeds_per_process: u64,
    /// Stop at the first failing seed (the smallest one, whatever the number of jobs).
    #[arg(long)]
    pub stop_at_first: bool,
    /// Fail (exit 1) when a sometimes-goal the scenario declares was reached by no seed.
    #[arg(long)]
    pub require_goals: bool,
    /// Where reports go.
    #[arg(long, default_value = "reports")]
    pub reports: PathBuf,
    /// One JSON object per failing seed (as found) and one for the sweep, for tools.
    #[arg(long)]
    pub json: bool,
}

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

/// How workers run their seeds.
enum Isolation {
    Thread,
    Process {
        cmd: isolate::ChildCommand,
        per_process: u64,
    },
}

struct Shared<'a> {
    cx: SeedContext<'a>,
    isolation: Isolation,
    seeds: (u64, u64),
    /// The next seed to hand out, as an index into the shard.
    next: AtomicU64,
    /// No seed at or above it is started (the range's end; the first failure with
    /// `--stop-at-first`; zero once the sweep is stopping).
    limit: AtomicU64,
    stop_at_first: bool,
    pictures: AtomicU64,
}

impl Shared<'_> {
    fn next_seed(&self) -> Option<u64> {
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        let seed = self.cx.shard.nth(self.seeds.0, self.seeds.1, k)?;
        (seed < self.limit.load(Ordering::Relaxed)).then_some(seed)
    }

    fn picture(&self) -> bool {
        self.pictures.load(Ordering::Relaxed) < HTML_PER_SWEEP
    }

    /// Hands the outcome on; false when the worker should stop.
    fn hand_on(&self, outcome: Outcome, tx: &mpsc::Sender<Outcome>) -> bool {
        match &outcome {
            Outcome::Failed(found) => {
                if self.stop_at_first {
                    self.limit
                        .fetch_min(found.failure.seed + 1, Ordering::Relaxed);
                }
                if found.failure.html.is_some() {
                    self.pictures.fetch_add(1, Ordering::Relaxed);
                }
            }
            Outcome::Error { .. } => {
                let _ = tx.send(outcome);
                return false;
            }
            Outcome::Passed { .. } => {}
        }
        tx.send(outcome).is_ok()
    }
}

fn thread_worker(sh: &Shared<'_>, tx: &mpsc::Sender<Outcome>) {
    let mut reported = seed::Reported::new();
    while let Some(seed) = sh.next_seed() {
        if !sh.hand_on(seed::run(&sh.cx, seed, sh.picture(), &mut reported), tx) {
            break;
        }
    }
}

/// Seeds a worker keeps in flight in its child: one running, one waiting in the pipe.
const IN_FLIGHT: usize = 2;

fn process_worker(
    sh: &Shared<'_>,
    cmd: &isolate::ChildCommand,
    per_process: u64,
    tx: &mpsc::Sender<Outcome>,
) {
    let mut child: Option<isolate::Child> = None;
    // Seeds taken from the range and not yet handed to a child (those of a child that died).
    let mut pending: VecDeque<u64> = VecDeque::new();
    // Seeds handed to the current child, oldest first.
    let mut in_flight: VecDeque<u64> = VecDeque::new();
    loop {
        // A child that has been handed its share ends once it has answered.
        if in_flight.is_empty()
            && let Some(c) = child.take_if(|c| c.sent >= per_process)
        {
            c.finish();
        }
        while in_flight.len() < IN_FLIGHT {
            if child.as_ref().is_some_and(|c| c.sent >= per_process) {
                break;
            }
            let Some(seed) = pending
                .pop_front()
                .filter(|&s| s < sh.limit.load(Ordering::Relaxed))
                .or_else(|| sh.next_seed())
            else {
                break;
            };
            let c = match &mut child {
                Some(c) => c,
                None => match isolate::Child::spawn(cmd) {
                    Ok(c) => child.insert(c),
                    Err(e) => {
                        let message = format!("cannot start a worker process: {e}");
                        sh.hand_on(Outcome::Error { seed, message }, tx);
                        return;
                    }
                },
            };
            c.send(seed, sh.picture());
            in_flight.push_back(seed);
        }
        let (Some(seed), Some(c)) = (in_flight.front().copied(), child.as_mut()) else {
            break;
        };
        let outcome = match c.recv() {
            Ok(outcome) if outcome.seed() == seed => outcome,
            Ok(outcome) => Outcome::Error {
                seed,
                message: format!(
                    "a worker process answered for seed {} when seed {seed} was due",
                    outcome.seed()
                ),
            },
            Err(died) => {
                child = None;
                let rest: Vec<u64> = in_flight.drain(1..).collect();
                pending.extend(rest);
                isolate::crash_found(
                    sh.cx.catalogue,
                    sh.cx.spec,
                    sh.cx.dir,
                    sh.cx.shard,
                    seed,
                    &died,
                )
            }
        };
        in_flight.pop_front();
        if !sh.hand_on(outcome, tx) {
            break;
        }
    }
    if let Some(c) = child {
        c.finish();
    }
}

fn worker(sh: &Shared<'_>, tx: &mpsc::Sender<Outcome>) {
    match &sh.isolation {
        Isolation::Thread => thread_worker(sh, tx),
        Isolation::Process { cmd, per_process } => process_worker(sh, cmd, *per_process, tx),
    }
}

fn write_summary(summary: &SweepSummary, dir: &Path) -> Result<(), UsageError> {
    summary.write(dir).map_err(|e| {
        UsageError(format!(
            "cannot write {}: {e}",
            dir.join("summary.json").display()
        ))
    })
}

pub fn run(catalogue: &Catalogue, args: SweepArgs) -> Result<ExitCode, UsageError> {
    let seeds = parse_seeds(&args.seeds)?;
    let shard = args
        .shard
        .as_deref()
        .map_or(Ok(Shard::WHOLE), Shard::parse)?;
    if shard.len(seeds.0, seeds.1) == 0 {
        return Err(UsageError(format!(
            "--shard {shard} of --seeds {}..{} holds no seed (the range has fewer than {} seeds)",
            seeds.0,
            seeds.1,
            shard.index + 1
        )));
    }
    let spec = spec_from(
        catalogue,
        Some(args.scenario.clone()),
        &args.shape,
        simkit::DecisionMode::Seeded(seeds.0),
    )?;
    let jobs = limits::jobs(args.jobs)?;
    let per_process = limits::seeds_per_process(args.seeds_per_process)?;
    let signals = Signals::install()?;
    // The report directory first: a path that cannot be written fails before any seed runs.
    let mut leaf = format!(
        "{}-{}-seeds{}-{}",
        report_dir::stamp(),
        spec.strategy.name(),
        seeds.0,
        seeds.1
    );
    if !shard.is_whole() {
        leaf.push_str(&format!("-shard{}of{}", shard.index, shard.count));
    }
    let dir = report_dir::make_dir(&args.reports, &spec.scenario, &leaf).map_err(UsageError)?;
    let (commit, rustc) = crate::replay_file::build_info();
    let isolation_name = match args.isolation.as_str() {
        "thread" => "thread".to_string(),
        _ => format!("process ({per_process} seeds per process)"),
    };
    let mut summary = SweepSummary {
        format: FORMAT.into(),
        version: VERSION,
        scenario: spec.scenario.clone(),
        strategy: spec.strategy.name().into(),
        mem: args.shape.mem.clone(),
        plant: spec.plant.clone(),
        pct_depth: spec.pct_depth,
        seeds,
        shard,
        stop_at_first: args.stop_at_first,
        isolation: isolation_name,
        commit: commit.into(),
        rustc: rustc.into(),
        status: Status::Running,
        ran: 0,
        failing: 0,
        by_oracle: Default::default(),
        failures: Vec::new(),
        extra_after_first: 0,
        wall_seconds: 0.0,
        goals: Default::default(),
        faults: Default::default(),
        coverage: Default::default(),
    };
    if let Some(s) = catalogue.find(&spec.scenario) {
        summary.declare_goals(s.goals());
    }
    let mut features = std::collections::BTreeSet::new();
    let started = Instant::now(); // determinism-ok: wall time of the sweep driver, outside every simulated run.
    write_summary(&summary, &dir)?;
    let isolation = match args.isolation.as_str() {
        "thread" => Isolation::Thread,
        _ => Isolation::Process {
            cmd: isolate::ChildCommand::new(&args.shape, &spec, &dir, shard)?,
            per_process,
        },
    };
    let shared = Shared {
        cx: SeedContext {
            catalogue,
            spec: &spec,
            dir: &dir,
            shard,
        },
        isolation,
        seeds,
        next: AtomicU64::new(0),
        limit: AtomicU64::new(seeds.1),
        stop_at_first: args.stop_at_first,
        pictures: AtomicU64::new(0),
    };
    let mut progress = progress::Progress::new(summary.planned(), started);
    let stopping = AtomicBool::new(false);
    let mut status = Status::Complete;
    let mut last_write = Instant::now(); // determinism-ok: paces summary rewrites only.
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel();
        let mut started_workers = 0;
        let mut spawn_error = None;
        for i in 0..jobs {
            let (sh, tx) = (&shared, tx.clone());
            match std::thread::Builder::new()
                .name(format!("sweep-{i}"))
                .spawn_scoped(scope, move || worker(sh, &tx))
            {
                Ok(_) => started_workers += 1,
                Err(e) => spawn_error = Some(e),
            }
        }
        drop(tx);
        if started_workers == 0 {
            status = Status::Error {
                message: format!(
                    "cannot start a worker thread: {}",
                    spawn_error.map_or_else(String::new, |e| e.to_string())
                ),
            };
            return;
        }
        if let Some(e) = spawn_error {
            errln!(
                "sim: sweep: started {started_workers} of {jobs} workers ({e}); going on with those"
            );
        }
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(Outcome::Passed { obs, .. }) => {
                    features.extend(obs.new_features);
                    summary.observe(&obs.goals, &obs.faults, features.len() as u64);
                    summary.ran += 1;
                }
                Ok(Outcome::Failed(found)) => {
                    let obs = &found.obs;
                    features.extend(obs.new_features.iter().copied());
                    summary.observe(&obs.goals, &obs.faults, features.len() as u64);
                    summary.ran += 1;
                    progress.clear();
                    if args.json {
                        json::print(&found.event);
                    } else {
                        outln!(
                            "fail seed={} trace={} {}",
                            found.failure.seed,
                            found.failure.trace_hash,
                            found.failure.first_violation
                        );
                        outln!(
                            "  {}",
                            ReplayFile::replay_command(&dir.join(&found.failure.replay))
                        );
                    }
                    summary.add(found.failure);
                }
                Ok(Outcome::Error { seed, message }) => {
                    if matches!(status, Status::Complete) {
                        status = Status::Error {
                            message: format!("at seed {seed}: {message}"),
                        };
                    }
                    shared.limit.store(0, Ordering::Relaxed);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if let Some(sig) = signals.received()
                && !stopping.swap(true, Ordering::Relaxed)
            {
                shared.limit.store(0, Ordering::Relaxed);
                status = Status::Interrupted { signal: sig };
                progress.clear();
                errln!(
                    "sim: sweep: {} received: finishing the seeds in flight and writing the summary (again to quit at once)",
                    Signals::describe(sig).0
                );
            }
            progress.tick(summary.ran, summary.failing);
            if last_write.elapsed() > Duration::from_secs(5) {
                last_write = Instant::now(); // determinism-ok: paces summary rewrites only.
                summary.wall_seconds = started.elapsed().as_secs_f64();
                let _ = summary.write(&dir);
                let _ = SweepSummary::write_features(&dir, &features);
            }
        }
    });
    progress.finish(summary.ran, summary.failing);
    summary.wall_seconds = started.elapsed().as_secs_f64();
    if args.stop_at_first && matches!(status, Status::Complete) {
        summary.keep_first_only();
    }
    summary.status = status.clone();
    if summary.coverage.curve.last().map(|c| c.0) != Some(summary.ran) {
        summary
            .coverage
            .curve
            .push((summary.ran, features.len() as u64));
    }
    let written = write_summary(&summary, &dir).and_then(|()| {
        SweepSummary::write_features(&dir, &features).map_err(|e| {
            UsageError(format!(
                "cannot write {}: {e}",
                dir.join(crate::summary::COVERAGE_FILE).display()
            ))
        })
    });
    let summary_path = dir.join("summary.md");
    let rate = summary.ran as f64 / summary.wall_seconds.max(1e-9);
    let state = match &status {
        Status::Complete | Status::Running => "complete",
        Status::Interrupted { .. } => "interrupted",
        Status::Error { .. } => "error",
    };
    let mem = spec
        .mem
        .map_or_else(|| "default".to_string(), |m| m.name().to_string());
    if args.json {
        json::print(&json!({
            "type": "sweep",
            "scenario": spec.scenario,
            "strategy": spec.strategy.name(),
            "mem": mem,
            "seeds": [seeds.0, seeds.1],
            "shard": shard.to_string(),
            "ran": summary.ran,
            "failures": summary.failing,
            "first_failure": summary.first_failure(),
            "coverage": summary.coverage.features,
            "goals": summary.goals.iter().map(|(n, g)| (n.clone(), g.seeds)).collect::<std::collections::BTreeMap<_, _>>(),
            "gaps": summary.gaps(),
            "faults_never_fired": summary.never_fired(),
            "seeds_per_sec": rate,
            "status": state,
            "summary": summary_path.display().to_string(),
        }));
    } else {
        outln!("report: {}", summary_path.display());
        let shard_note = if shard.is_whole() {
            String::new()
        } else {
            format!(" shard={shard}")
        };
        let gaps = summary.gaps();
        if !gaps.is_empty() {
            outln!("gaps: sometimes-goals no seed reached: {}", gaps.join(", "));
        }
        let quiet = summary.never_fired();
        if !quiet.is_empty() {
            outln!("faults armed that never fired: {}", quiet.join(", "));
        }
        outln!(
            "sweep scenario={} strategy={} mem={mem} seeds={}..{}{shard_note} ran={} failures={} first_failure={} coverage={} goals={}/{} seeds_per_sec={rate:.1} status={state}",
            spec.scenario,
            spec.strategy.name(),
            seeds.0,
            seeds.1,
            summary.ran,
            summary.failing,
            summary
                .first_failure()
                .map_or_else(|| "none".to_string(), |f| f.to_string()),
            summary.coverage.features,
            summary.goals.len() - gaps.len(),
            summary.goals.len(),
        );
    }
    written?;
    match status {
        Status::Error { message } => Err(UsageError(format!(
            "sweep stopped: {message} (summary: {})",
            summary_path.display()
        ))),
        Status::Interrupted { signal } => Ok(ExitCode::from(Signals::describe(signal).1)),
        _ => {
            let gaps = summary.gaps();
            if args.require_goals && !gaps.is_empty() {
                errln!(
                    "sim: sweep: sometimes-goals no seed reached: {}",
                    gaps.join(", ")
                );
                return Ok(ExitCode::from(1));
            }
            Ok(verdict_code(summary.failing == 0))
        }
    }
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
}
