//! `sim shrink FILE`: cuts a failing run's decision stream down while the same oracle still
//! fails, and writes a replay file driven by the shrunk bytes.
//!
//! Every choice comes from one byte stream and exhausted bytes mean "the default" (the first
//! item, no fault), so shrinking bytes shrinks the schedule and the faults together. Passes, as
//! in test-case reducers: cut the tail, delete chunks of 8/4/2/1 bytes, then lower bytes
//! towards zero; repeat until a pass changes nothing or the run budget is spent.

use crate::cli::{UsageError, print_report};
use crate::replay_file::ReplayFile;
use clap::Args;
use scenarios::{RunReport, RunSpec};
use simkit::DecisionMode;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct ShrinkArgs {
    /// A replay file of a failing run.
    file: PathBuf,
    /// Where to write the shrunk replay file (default: next to FILE, `.shrunk.json`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Give up after this many trial runs.
    #[arg(long, default_value_t = 5_000)]
    max_runs: u64,
}

struct Shrinker<'a> {
    spec: &'a RunSpec,
    oracle: &'static str,
    runs: u64,
    max_runs: u64,
}

impl Shrinker<'_> {
    /// Does this stream still fail the same oracle?
    fn fails(&mut self, bytes: &[u8]) -> bool {
        if self.runs >= self.max_runs {
            return false;
        }
        self.runs += 1;
        let spec = RunSpec {
            source: DecisionMode::Bytes(bytes.to_vec()),
            ..self.spec.clone()
        };
        scenarios::run(&spec).is_ok_and(|r| r.violations.iter().any(|v| v.oracle == self.oracle))
    }

    fn cut_tail(&mut self, bytes: &mut Vec<u8>) -> bool {
        let mut changed = false;
        let mut chunk = bytes.len() / 2;
        while chunk > 0 {
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
        let mut changed = false;
        for size in [8, 4, 2, 1] {
            let mut i = 0;
            while i + size <= bytes.len() {
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
        let mut changed = false;
        for i in 0..bytes.len() {
            for value in [0, bytes[i] / 2, bytes[i].saturating_sub(1)] {
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

pub fn run(args: ShrinkArgs) -> Result<ExitCode, UsageError> {
    let file = ReplayFile::read(&args.file)?;
    let spec = file.spec()?;
    let original: RunReport = scenarios::run(&spec)?;
    let Some(first) = original.violations.first() else {
        return Err(UsageError(format!(
            "the run in {} passes: there is no failure to shrink",
            args.file.display()
        )));
    };
    let mut shrinker = Shrinker {
        spec: &spec,
        oracle: first.oracle,
        runs: 0,
        max_runs: args.max_runs,
    };
    let mut bytes = original.decisions.clone();
    if !shrinker.fails(&bytes) {
        return Err(UsageError(
            "the run does not replay from its own decision bytes (nondeterminism?)".into(),
        ));
    }
    loop {
        let a = shrinker.cut_tail(&mut bytes);
        let b = shrinker.delete_chunks(&mut bytes);
        let c = shrinker.lower_bytes(&mut bytes);
        if !(a || b || c) || shrinker.runs >= shrinker.max_runs {
            break;
        }
    }
    let final_spec = RunSpec {
        source: DecisionMode::Bytes(bytes.clone()),
        capture_trace: true,
        ..spec.clone()
    };
    let report = scenarios::run(&final_spec)?;
    let out = args
        .out
        .unwrap_or_else(|| args.file.with_extension("shrunk.json"));
    ReplayFile::from_report(&report, spec.pct_depth)
        .write(&out)
        .map_err(|e| UsageError(format!("cannot write {}: {e}", out.display())))?;
    println!(
        "shrunk: oracle {} still fails; decision bytes {} -> {}, steps {} -> {}, events {} -> {}, {} trial runs",
        shrinker.oracle,
        original.decisions.len(),
        bytes.len(),
        original.steps,
        report.steps,
        original.events,
        report.events,
        shrinker.runs
    );
    println!("wrote {}", out.display());
    print_report(&report, false);
    Ok(ExitCode::SUCCESS)
}
