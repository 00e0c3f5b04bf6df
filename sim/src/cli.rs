//! The command line: run one seed, sweep seeds, replay a failure, check determinism, benchmark.
//!
//! Exit codes: 0 every oracle held (or, for `--check-determinism`, both runs were identical);
//! 1 an oracle failed (or the runs diverged); 2 bad usage or bad input.

use crate::{bench, determinism, hw, replay_file, shrink, sweep};
use clap::{Args, Parser, Subcommand};
use replay_file::ReplayFile;
use scenarios::{RunSpec, StrategyName};
use simkit::{DecisionMode, MemMode};
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
    run: RunArgs,
}

#[derive(Args, Debug)]
pub struct Shape {
    /// Scheduling strategy.
    #[arg(long, default_value = "random", value_parser = ["random", "pct"])]
    pub strategy: String,
    /// PCT depth d (bugs needing d orderings); default 3.
    #[arg(long, value_name = "D")]
    pub pct_depth: Option<u32>,
    /// Memory model (default tso, or the weakest mode the planted bug needs).
    #[arg(long, value_parser = ["sc", "tso", "relaxed"])]
    pub mem: Option<String>,
    /// Switch on a planted bug (see --list-bugs).
    #[arg(long, value_name = "BUG")]
    pub plant: Option<String>,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Run this seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Scenario to run (default: the mailbox demo, or the planted bug's scenario).
    #[arg(long)]
    scenario: Option<String>,
    #[command(flatten)]
    shape: Shape,
    /// Print every trace line.
    #[arg(long)]
    trace: bool,
    /// List the scenario catalogue.
    #[arg(long)]
    list: bool,
    /// List the planted bugs.
    #[arg(long)]
    list_bugs: bool,
    /// Run the seed twice and compare the traces.
    #[arg(long)]
    check_determinism: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run a range of seeds in parallel and write a report.
    Sweep(SweepArgs),
    /// Reproduce a run from its replay file.
    Replay {
        file: PathBuf,
        /// Print every trace line.
        #[arg(long)]
        trace: bool,
    },
    /// Measure the kernel and every scenario: decisions/s, events/s, seeds/s, time speedup.
    Bench(bench::BenchArgs),
    /// Shrink a failing run's decision stream and write a shorter replay file.
    Shrink(shrink::ShrinkArgs),
    /// Run a scenario on real parts (wasmtime; KVM to come), judged by the same oracles.
    Hw(hw::HwArgs),
}

#[derive(Args)]
pub struct SweepArgs {
    #[arg(long)]
    pub scenario: String,
    /// Seeds to run, `A..B` (B exclusive).
    #[arg(long, value_name = "A..B")]
    pub seeds: String,
    #[command(flatten)]
    pub shape: Shape,
    /// Worker threads (default: every core).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Stop at the first failing seed (the smallest one, whatever the number of jobs).
    #[arg(long)]
    pub stop_at_first: bool,
    /// Where reports go.
    #[arg(long, default_value = "reports")]
    pub reports: PathBuf,
}

/// Bad usage or bad input: one line on stderr, exit 2.
pub struct UsageError(pub String);

impl<E: std::fmt::Display> From<E> for UsageError {
    fn from(e: E) -> Self {
        UsageError(e.to_string())
    }
}

pub fn main() -> ExitCode {
    simkit::install_quiet_actor_panic_hook();
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(UsageError(msg)) => {
            eprintln!("sim: error: {msg}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(cli: Cli) -> Result<ExitCode, UsageError> {
    match cli.command {
        Some(Command::Sweep(args)) => sweep::run(args),
        Some(Command::Replay { file, trace }) => replay(&file, trace),
        Some(Command::Bench(args)) => bench::run(args),
        Some(Command::Shrink(args)) => shrink::run(args),
        Some(Command::Hw(args)) => hw::run(args),
        None => single(cli.run),
    }
}

pub fn spec_from(
    scenario: Option<String>,
    shape: &Shape,
    source: DecisionMode,
) -> Result<RunSpec, UsageError> {
    let scenario = match (scenario, &shape.plant) {
        (Some(s), _) => s,
        (None, Some(bug)) => scenarios::find_bug(bug)
            .map(|b| b.scenario.to_string())
            .ok_or_else(|| {
                UsageError(format!(
                    "unknown planted bug '{bug}' (see `sim --list-bugs`)"
                ))
            })?,
        (None, None) => scenarios::DEFAULT_SCENARIO.to_string(),
    };
    let spec = RunSpec {
        scenario,
        source,
        // clap has already restricted these to known names.
        strategy: StrategyName::parse(&shape.strategy).unwrap_or(StrategyName::Random),
        pct_depth: shape.pct_depth,
        mem: shape.mem.as_deref().and_then(MemMode::parse),
        plant: shape.plant.clone(),
        capture_trace: false,
    };
    scenarios::validate(&spec)?;
    Ok(spec)
}

fn single(args: RunArgs) -> Result<ExitCode, UsageError> {
    if args.list {
        for s in scenarios::catalogue() {
            println!("{}  {}", s.name(), s.description());
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.list_bugs {
        for b in scenarios::all_bugs() {
            println!(
                "{}  {}  {} [mirrors: {}]",
                b.name, b.scenario, b.description, b.mirrors
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let seed = args.seed.ok_or_else(|| {
        UsageError("no --seed N given (or use --list, --list-bugs, sweep, replay, bench)".into())
    })?;
    let mut spec = spec_from(args.scenario, &args.shape, DecisionMode::Seeded(seed))?;
    if args.check_determinism {
        return determinism::check(spec);
    }
    spec.capture_trace = args.trace;
    let report = scenarios::run(&spec)?;
    print_report(&report, args.trace);
    Ok(verdict_code(report.passed()))
}

pub fn verdict_code(passed: bool) -> ExitCode {
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

pub fn print_report(report: &scenarios::RunReport, trace: bool) {
    if trace {
        for line in report.trace_lines.iter().flatten() {
            println!("{line}");
        }
    }
    let opts: Vec<String> = report
        .options
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!("options: {}", opts.join(" "));
    println!(
        "steps={} sim_time_ns={} decisions={}",
        report.steps, report.sim_ns, report.draws
    );
    for v in &report.violations {
        println!("violation: {v}");
    }
    println!("{}", report.verdict_line());
}

fn replay(path: &std::path::Path, trace: bool) -> Result<ExitCode, UsageError> {
    let file = ReplayFile::read(path)?;
    let mut spec = file.spec()?;
    spec.capture_trace = trace;
    let report = scenarios::run(&spec)?;
    let mut diverged = false;
    if report.options != file.options {
        diverged = true;
        eprintln!(
            "sim: replay: derived options differ from the file's (the code changed since it was written)"
        );
    }
    let hash = format!("{:016x}", report.trace_hash);
    if hash != file.trace_hash {
        diverged = true;
        let (commit, rustc) = replay_file::build_info();
        eprintln!(
            "sim: replay DIVERGED: file has trace={} (commit {}, {}), this run trace={hash} (commit {commit}, {rustc})",
            file.trace_hash, file.commit, file.rustc
        );
    }
    print_report(&report, trace);
    Ok(verdict_code(report.passed() && !diverged))
}
