//! The command line: parses and dispatches; each subcommand lives in its own file.
//!
//! Exit codes: 0 every oracle held (or, for `--check-determinism`, both runs were identical);
//! 1 an oracle failed (or the runs diverged); 2 bad usage or bad input; 3 a replay diverged
//! from its file; 130 and 143 a sweep or shrink stopped by SIGINT or SIGTERM (after writing
//! what it had).

use crate::exit::UsageError;
use crate::run::Show;
use crate::{bench, errln, merge, replay, report, shrink, single, sweep};
use clap::{Parser, Subcommand};
use harness::Catalogue;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "sim",
    version,
    about = "Deterministic simulation testbed for capability systems"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: single::RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run a range of seeds in parallel and write a report.
    Sweep(sweep::SweepArgs),
    /// Merge the report directories of a sharded sweep (`sim sweep --shard I/N`) into one.
    Merge(merge::MergeArgs),
    /// A sweep's child process: runs the seeds it reads on standard input (`--isolation
    /// process`).
    #[command(hide = true)]
    SweepWorker(sweep::isolate::WorkerArgs),
    /// Reproduce a run from its replay file: exit 0 passed as recorded, 1 failed exactly as
    /// recorded ("reproduced"), 3 diverged (naming the first difference).
    Replay {
        file: PathBuf,
        #[command(flatten)]
        show: Show,
    },
    /// Draw a run from its replay file as a self-contained HTML page: a lane per actor, arrows
    /// for messages, doorbells, interrupts and calls, the violation marked, the trace below.
    Report(report::ReportArgs),
    /// Measure the kernel and every scenario: decisions/s, events/s, seeds/s, time speedup.
    Bench(bench::BenchArgs),
    /// Shrink a failing run's decision stream and write a shorter replay file.
    Shrink(shrink::ShrinkArgs),
    /// Run a scenario on real parts (KVM and the real monitor, or wasmtime), judged by the same
    /// oracles.
    #[cfg(feature = "catalogue")]
    Hw(crate::hw::HwArgs),
    /// Run a directory of cells (each a subdirectory with `pulp.cell.toml` and its module):
    /// init, seeded steps and calls, shutdown and close, under the cell oracles; one seed, or
    /// a sweep writing replay files.
    #[cfg(feature = "catalogue")]
    Cells(crate::cells::CellsArgs),
}

/// Parses the command line and runs it against `catalogue`.
pub fn main(catalogue: Catalogue) -> ExitCode {
    simkit::install_quiet_actor_panic_hook();
    let cli = Cli::parse();
    match dispatch(&catalogue, cli) {
        Ok(code) => code,
        Err(UsageError(msg)) => {
            errln!("sim: error: {msg}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(catalogue: &Catalogue, cli: Cli) -> Result<ExitCode, UsageError> {
    match cli.command {
        Some(Command::Sweep(args)) => sweep::run(catalogue, args),
        Some(Command::Merge(args)) => merge::run(args),
        Some(Command::SweepWorker(args)) => sweep::isolate::worker_main(catalogue, args),
        Some(Command::Replay { file, show }) => replay::run(catalogue, &file, &show),
        Some(Command::Report(args)) => report::run(catalogue, args),
        Some(Command::Bench(args)) => bench::run(catalogue, args),
        Some(Command::Shrink(args)) => shrink::run(catalogue, args),
        #[cfg(feature = "catalogue")]
        Some(Command::Hw(args)) => crate::hw::run(args),
        #[cfg(feature = "catalogue")]
        Some(Command::Cells(args)) => crate::cells::run(catalogue, args),
        None => single::run(catalogue, cli.run),
    }
}
