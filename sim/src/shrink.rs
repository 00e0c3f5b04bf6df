//! `sim shrink FILE`: cuts a failing run's decision stream down while it still fails with the
//! same violation (the same oracle, kind, actor and object, not only the same oracle), and
//! writes a replay file driven by the shrunk bytes.
//!
//! Every choice comes from one byte stream and exhausted bytes mean "the default" (the first
//! item, no fault), so shrinking bytes shrinks the schedule and the faults together. Passes, as
//! in test-case reducers: cut the tail, delete chunks of 8/4/2/1 bytes, then lower bytes
//! towards zero; repeat until a pass changes nothing or the run budget is spent.
//!
//! The best stream so far is written to the output file as soon as it is found, so a shrink
//! stopped by its cap, by SIGINT/SIGTERM or by anything else leaves its last result, and
//! `--resume` starts again from it. Progress goes to stderr.

use crate::exit::UsageError;
use crate::replay_file::ReplayFile;
use crate::run::{Show, print_report};
use crate::signals::Signals;
use crate::{errln, limits, outln};
use clap::Args;
use harness::{Catalogue, RunReport, RunSpec, Violation};
use simkit::DecisionMode;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct ShrinkArgs {
    /// A replay file of a failing run.
    file: PathBuf,
    /// Where to write the shrunk replay file (default: next to FILE, `.shrunk.json`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Give up after this many trial runs (at most 10,000,000).
    #[arg(long, default_value_t = 5_000)]
    max_runs: u64,
    /// Start from the output file's stream if it exists and still fails the same way (the
    /// result of an earlier shrink that hit its cap or was stopped).
    #[arg(long)]
    resume: bool,
}

/// Why shrinking stopped.
enum Stop {
    Cap,
    Signal(i32),
}

struct Shrinker<'a> {
    catalogue: &'a Catalogue,
    spec: &'a RunSpec,
    target: Violation,
    runs: u64,
    max_runs: u64,
    stopped: Option<Stop>,
    signals: Signals,
    out: PathBuf,
    /// The best stream so far, its run, and whether the output file holds it yet.
    best: Vec<u8>,
    best_report: Option<RunReport>,
    unsaved: bool,
    last_save: Instant,
    last_progress: Instant,
    original_len: usize,
    pass: &'static str,
}

impl Shrinker<'_> {
    fn spec_for(&self, bytes: &[u8]) -> RunSpec {
        RunSpec {
            source: DecisionMode::Bytes(bytes.to_vec()),
            ..self.spec.clone()
        }
    }

    /// Does this stream still fail with the target violation? Every yes is adopted by the
    /// caller, so it becomes the best so far.
    fn fails(&mut self, bytes: &[u8]) -> bool {
        if self.stopped.is_some() {
            return false;
        }
        if self.runs >= self.max_runs {
            self.stopped = Some(Stop::Cap);
            return false;
        }
        if let Some(sig) = self.signals.received() {
            self.stopped = Some(Stop::Signal(sig));
            return false;
        }
        self.runs += 1;
        self.progress();
        let Ok(report) = harness::run(self.catalogue, &self.spec_for(bytes)) else {
            return false;
        };
        let same = report.violations.iter().any(|v| v.same_as(&self.target));
        if same {
            self.best = bytes.to_vec();
            self.best_report = Some(report);
            self.unsaved = true;
            if self.last_save.elapsed() > Duration::from_millis(500) {
                self.save();
            }
        }
        same
    }

    /// Writes the best stream so far to the output file.
    fn save(&mut self) {
        if let Some(report) = &self.best_report
            && self.unsaved
        {
            if let Err(e) = ReplayFile::from_report(report, self.spec.pct_depth).write(&self.out) {
                errln!("sim: shrink: cannot write {}: {e}", self.out.display());
            }
            self.unsaved = false;
            self.last_save = Instant::now(); // determinism-ok: paces file writes of the shrink driver.
        }
    }

    fn progress(&mut self) {
        if self.last_progress.elapsed() > Duration::from_secs(1) {
            self.last_progress = Instant::now(); // determinism-ok: paces the progress line.
            errln!(
                "shrink: {} trial runs, decision bytes {} -> {} ({})",
                self.runs,
                self.original_len,
                self.best.len(),
                self.pass
            );
        }
    }

    fn cut_tail(&mut self, bytes: &mut Vec<u8>) -> bool {
        self.pass = "cutting the tail";
        let mut changed = false;
        let mut chunk = bytes.len() / 2;
        while chunk > 0 && self.stopped.is_none() {
            if bytes.len() >= chunk && self.fails(&bytes[..bytes.len() - chunk]) {
                bytes.truncate(bytes.len() - chunk);
                changed = true;
            } else {
                chunk /= 2;
            }
        }
        changed
    }

    fn delete_chunks(&mut self, bytes: &mut Vec<u8>) -> bool {
        self.pass = "deleting chunks";
        let mut changed = false;
        for size in [8, 4, 2, 1] {
            let mut i = 0;
            while i + size <= bytes.len() && self.stopped.is_none() {
                let mut candidate = bytes.clone();
                candidate.drain(i..i + size);
                if self.fails(&candidate) {
                    *bytes = candidate;
                    changed = true;
                } else {
                    i += size;
                }
            }
        }
        changed
    }

    fn lower_bytes(&mut self, bytes: &mut [u8]) -> bool {
        self.pass = "lowering bytes";
        let mut changed = false;
        for i in 0..bytes.len() {
            for value in [0, bytes[i] / 2, bytes[i].saturating_sub(1)] {
                if self.stopped.is_some() {
                    return changed;
                }
                if value < bytes[i] {
                    let old = bytes[i];
                    bytes[i] = value;
                    if self.fails(bytes) {
                        changed = true;
                        break;
                    }
                    bytes[i] = old;
                }
            }
        }
        changed
    }
}

pub fn run(catalogue: &Catalogue, args: ShrinkArgs) -> Result<ExitCode, UsageError> {
    let max_runs = limits::shrink_runs(args.max_runs)?;
    let file = ReplayFile::read(&args.file)?;
    let spec = file.spec()?;
    let original: RunReport = harness::run(catalogue, &spec)?;
    let Some(target) = original.violations.first().cloned() else {
        return Err(UsageError(format!(
            "the run in {} passes: there is no failure to shrink",
            args.file.display()
        )));
    };
    let out = args
        .out
        .unwrap_or_else(|| args.file.with_extension("shrunk.json"));
    let now = Instant::now(); // determinism-ok: paces the shrink driver's output only.
    let mut shrinker = Shrinker {
        catalogue,
        spec: &spec,
        target,
        runs: 0,
        max_runs,
        stopped: None,
        signals: Signals::install()?,
        out: out.clone(),
        best: original.decisions.clone(),
        best_report: None,
        unsaved: false,
        last_save: now,
        last_progress: now,
        original_len: original.decisions.len(),
        pass: "checking the original",
    };
    let mut bytes = original.decisions.clone();
    if args.resume && out.exists() {
        let earlier = ReplayFile::read(&out)?;
        match earlier.spec()?.source {
            DecisionMode::Bytes(b) if earlier.scenario == file.scenario && shrinker.fails(&b) => {
                errln!(
                    "shrink: resuming from {} ({} decision bytes)",
                    out.display(),
                    b.len()
                );
                bytes = b;
            }
            _ => {
                return Err(UsageError(format!(
                    "cannot resume from {}: it is not a shrunk run of {} that still fails with {}",
                    out.display(),
                    args.file.display(),
                    shrinker.target.identity()
                )));
            }
        }
    } else if !shrinker.fails(&bytes) {
        return Err(UsageError(
            "the run does not replay from its own decision bytes (nondeterminism?)".into(),
        ));
    }
    loop {
        let a = shrinker.cut_tail(&mut bytes);
        let b = shrinker.delete_chunks(&mut bytes);
        let c = shrinker.lower_bytes(&mut bytes);
        if !(a || b || c) || shrinker.stopped.is_some() {
            break;
        }
    }
    // The final file keeps its trace lines (so a diverging replay can name a line).
    let final_spec = RunSpec {
        source: DecisionMode::Bytes(shrinker.best.clone()),
        capture_trace: true,
        ..spec.clone()
    };
    let report = harness::run(catalogue, &final_spec)?;
    ReplayFile::from_report(&report, spec.pct_depth)
        .write(&out)
        .map_err(|e| UsageError(format!("cannot write {}: {e}", out.display())))?;
    let kept = report
        .violations
        .iter()
        .find(|v| v.same_as(&shrinker.target))
        .map_or_else(|| shrinker.target.to_string(), ToString::to_string);
    let how = match &shrinker.stopped {
        None => "done: no pass shrinks it further".to_string(),
        Some(Stop::Cap) => format!(
            "stopped at its cap of {max_runs} trial runs, not finished; `sim shrink {} --out {} --resume` goes on from here",
            args.file.display(),
            out.display()
        ),
        Some(Stop::Signal(s)) => format!(
            "interrupted by {}; `sim shrink {} --out {} --resume` goes on from here",
            Signals::describe(*s).0,
            args.file.display(),
            out.display()
        ),
    };
    outln!(
        "shrunk: still fails with {}; decision bytes {} -> {}, steps {} -> {}, events {} -> {}, {} trial runs; {how}",
        shrinker.target.identity(),
        original.decisions.len(),
        shrinker.best.len(),
        original.steps,
        report.steps,
        original.events,
        report.events,
        shrinker.runs
    );
    outln!("kept: {kept}");
    outln!("wrote {}", out.display());
    print_report(&report, &Show::default())?;
    Ok(match shrinker.stopped {
        Some(Stop::Signal(s)) => ExitCode::from(Signals::describe(s).1),
        _ => ExitCode::SUCCESS,
    })
}
