//! `sim cells DIR`: a directory of the user's own cells under the simulator, through the
//! `cells-go` scenario's driver and the cell oracles. One seed is a run like `sim --seed N`;
//! a range is a sweep like `sim sweep`, writing the same replay files (the scenario's name,
//! `cells:K:DIR`, records the directory and the step count, so `sim replay FILE` runs the
//! same cells again).

use crate::exit::UsageError;
use crate::{single, sweep};
use clap::{Args, Parser};
use harness::Catalogue;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct CellsArgs {
    /// A directory whose subdirectories each hold one cell: `pulp.cell.toml` and its module.
    pub dir: PathBuf,
    /// Run this one seed.
    #[arg(long, conflicts_with = "seeds")]
    pub seed: Option<u64>,
    /// Sweep these seeds, `A..B` (B exclusive); default 0..100.
    #[arg(long, value_name = "A..B")]
    pub seeds: Option<String>,
    /// Entries each cell takes between init and shutdown.
    #[arg(long, value_name = "K", default_value_t = 8)]
    pub steps: u64,
    /// Scheduling strategy.
    #[arg(long, default_value = "random", value_parser = ["random", "pct"])]
    pub strategy: String,
    /// Worker threads of a sweep (default: every core).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Where a sweep's reports go.
    #[arg(long, default_value = "reports")]
    pub reports: PathBuf,
    /// Print every trace line (one seed).
    #[arg(long)]
    pub trace: bool,
}

/// The most entries a cell may be given per run.
const MAX_STEPS: u64 = 10_000;

#[derive(Parser)]
#[command(name = "sim")]
struct SweepCli {
    #[command(flatten)]
    args: sweep::SweepArgs,
}

#[derive(Parser)]
#[command(name = "sim")]
struct SingleCli {
    #[command(flatten)]
    args: single::RunArgs,
}

pub fn run(catalogue: &Catalogue, args: CellsArgs) -> Result<ExitCode, UsageError> {
    if args.steps > MAX_STEPS {
        return Err(UsageError(format!(
            "--steps {} is too many (at most {MAX_STEPS})",
            args.steps
        )));
    }
    let cells = scenarios::cells::dir::load(&args.dir, args.steps)
        .map_err(|e| UsageError(format!("cells: {e}")))?;
    let name = scenarios::Scenario::name(&cells).to_string();
    let strategy = args.strategy.clone();
    let reports = args.reports.display().to_string();
    if let Some(seed) = args.seed {
        let mut argv = vec![
            "sim".to_string(),
            "--scenario".into(),
            name,
            "--seed".into(),
            seed.to_string(),
            "--strategy".into(),
            strategy,
        ];
        if args.trace {
            argv.push("--trace".into());
        }
        let cli = SingleCli::try_parse_from(argv).map_err(|e| UsageError(e.to_string()))?;
        return single::run(catalogue, cli.args);
    }
    let seeds = args.seeds.unwrap_or_else(|| "0..100".to_string());
    let mut argv = vec![
        "sim".to_string(),
        "--scenario".into(),
        name,
        "--seeds".into(),
        seeds,
        "--strategy".into(),
        strategy,
        "--reports".into(),
        reports,
    ];
    if let Some(jobs) = args.jobs {
        argv.extend(["--jobs".to_string(), jobs.to_string()]);
    }
    let cli = SweepCli::try_parse_from(argv).map_err(|e| UsageError(e.to_string()))?;
    sweep::run(catalogue, cli.args)
}
