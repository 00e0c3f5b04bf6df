//! `sim --seed N`: one seeded run (or the catalogue's lists).

use crate::exit::{UsageError, verdict_code};
use crate::replay_file::ReplayFile;
use crate::run::{Shape, Show, print_report, spec_from};
use crate::{determinism, errln, outln};
use clap::Args;
use harness::Catalogue;
use simkit::DecisionMode;
use std::path::PathBuf;
use std::process::ExitCode;

/// The environment variable that gives a bare run its seed when `--seed` is not given (as
/// `MADSIM_TEST_SEED` does for madsim's tests).
pub const SEED_VAR: &str = "SIM_SEED";

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Run this seed (or set SIM_SEED=N in the environment).
    #[arg(long)]
    seed: Option<u64>,
    /// Scenario to run (default: the catalogue's first, or the planted bug's scenario).
    #[arg(long)]
    scenario: Option<String>,
    #[command(flatten)]
    shape: Shape,
    #[command(flatten)]
    show: Show,
    /// Write the run's replay file here (for `sim replay`, `sim shrink`, `sim report`).
    #[arg(long, value_name = "FILE")]
    save: Option<PathBuf>,
    /// List the scenario catalogue (NAME  description).
    #[arg(long)]
    list: bool,
    /// With --list: only scenarios of this kind, one name per line.
    #[arg(long, value_parser = ["component", "litmus", "calibration"], requires = "list")]
    kind: Option<String>,
    /// List the planted bugs.
    #[arg(long)]
    list_bugs: bool,
    /// Run the seed twice and compare the traces.
    #[arg(long)]
    check_determinism: bool,
}

/// The seed: `--seed`, else `SIM_SEED` from the environment.
fn seed(flag: Option<u64>) -> Result<u64, UsageError> {
    if let Some(s) = flag {
        return Ok(s);
    }
    match std::env::var(SEED_VAR) {
        Ok(v) => v.trim().parse::<u64>().map_err(|_| {
            UsageError(format!(
                "{SEED_VAR}='{v}' is not a seed (a whole number from 0 to {})",
                u64::MAX
            ))
        }),
        Err(std::env::VarError::NotUnicode(_)) => Err(UsageError(format!(
            "{SEED_VAR} is not a seed (not even text)"
        ))),
        Err(std::env::VarError::NotPresent) => Err(UsageError(format!(
            "no --seed N given (nor {SEED_VAR}=N; or use --list, --list-bugs, sweep, replay, report, bench)"
        ))),
    }
}

pub fn run(catalogue: &Catalogue, args: RunArgs) -> Result<ExitCode, UsageError> {
    if args.list {
        let kind = args.kind.as_deref().and_then(harness::ScenarioKind::parse);
        for s in catalogue.scenarios() {
            match kind {
                Some(k) if s.kind() == k => outln!("{}", s.name()),
                Some(_) => {}
                None => outln!("{}  {}", s.name(), s.description()),
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.list_bugs {
        for b in catalogue.bugs() {
            outln!(
                "{}  {}  {} [mirrors: {}]",
                b.name,
                b.scenario,
                b.description,
                b.mirrors
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let seed = seed(args.seed)?;
    // Check the filter before running anything.
    args.show.filter()?;
    let mut spec = spec_from(
        catalogue,
        args.scenario,
        &args.shape,
        DecisionMode::Seeded(seed),
    )?;
    if args.check_determinism {
        return determinism::check(catalogue, spec);
    }
    // A saved run keeps its trace lines (when small), so a replay that diverges can name the
    // first line that differs.
    spec.capture_trace = args.show.wants_trace() || args.save.is_some();
    let report = harness::run(catalogue, &spec)?;
    if let Some(path) = &args.save {
        ReplayFile::from_report(&report, spec.pct_depth)
            .write(path)
            .map_err(|e| UsageError(format!("cannot write replay file {}: {e}", path.display())))?;
        errln!("sim: wrote {}", path.display());
    }
    print_report(&report, &args.show)?;
    Ok(verdict_code(report.passed()))
}
