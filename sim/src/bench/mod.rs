//! `sim bench`: the kernel's speed and each scenario's, on one core.
//!
//! - Kernel: N actors that each take `steps/N` scheduling steps; once with bare yields (pure
//!   scheduling decisions), once with a traced atomic RMW per step (decisions plus events plus
//!   the memory model). Repeated for several N to show how cost grows with the number of actors.
//! - Scenarios: seeds run one after another; seeds/s, decisions/s, events/s, and the speedup of
//!   simulated time over wall time.

#[cfg(feature = "catalogue")]
pub mod cells;
#[cfg(feature = "catalogue")]
pub mod ring;

use crate::exit::{UsageError, verdict_code};
use clap::Args;
use harness::Catalogue;
use harness::{RunSpec, StrategyName};
use simkit::{DecisionSource, KernelOptions, MemMode, Ordering, RmwOp, Sim, StrategyKind};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Args)]
pub struct BenchArgs {
    /// Seeds per scenario.
    #[arg(long, default_value_t = 200)]
    seeds: u64,
    /// Only this scenario (default: all, plus the kernel benchmark).
    #[arg(long)]
    scenario: Option<String>,
    /// Scheduling steps per kernel benchmark point.
    #[arg(long, default_value_t = 400_000)]
    kernel_steps: u64,
    #[arg(long, default_value = "random", value_parser = ["random", "pct"])]
    strategy: String,
    /// Instead: seeds (and seconds) to find each planted bug (of `--scenario`, if given), per
    /// strategy, over `--seeds`.
    #[arg(long)]
    bugs: bool,
    /// Instead: the cell host's own speed on wasmi (steps/s per cell, sibling calls/s), with
    /// `--seeds` thousand entries per row.
    #[arg(long)]
    cells: bool,
    /// Ring-pipe throughput from the bare-metal guest in a KVM vCPU to the host, against
    /// `memcpy` of the same bytes (needs /dev/kvm).
    #[arg(long)]
    ring_vcpu: bool,
}

fn bug_rows(catalogue: &Catalogue, seeds: u64, only: Option<&str>) -> Result<(), UsageError> {
    crate::outln!("## Seeds to find each planted bug ({seeds} seeds per row, one core)\n");
    crate::outln!(
        "| bug | scenario | mem | strategy | found in | first seed | median seeds-to-find | median seconds-to-find |"
    );
    crate::outln!("|---|---|---|---|---:|---:|---:|---:|");
    let mut rows: Vec<(String, RunSpec)> = Vec::new();
    for bug in catalogue
        .bugs()
        .filter(|b| only.is_none_or(|s| s == b.scenario))
    {
        rows.push((
            bug.name.to_string(),
            RunSpec {
                plant: Some(bug.name.into()),
                ..RunSpec::seeded(bug.scenario, 0)
            },
        ));
    }
    if only.is_none_or(|s| s == "calib-depth2") {
        rows.push((
            "(built in, depth 2)".into(),
            RunSpec {
                mem: Some(MemMode::Sc),
                ..RunSpec::seeded("calib-depth2", 0)
            },
        ));
    }
    for (label, base) in rows {
        for (strategy, depth) in [
            (StrategyName::Random, None),
            (StrategyName::Pct, Some(2)),
            (StrategyName::Pct, Some(3)),
        ] {
            let spec = RunSpec {
                strategy,
                pct_depth: depth,
                ..base.clone()
            };
            harness::validate(catalogue, &spec)?;
            let mut failing = Vec::new();
            let mut mem = String::new();
            let t = Instant::now(); // determinism-ok: benchmark wall time, outside the simulated runs being measured.
            for seed in 0..seeds {
                let r = harness::run(
                    catalogue,
                    &RunSpec {
                        source: simkit::DecisionMode::Seeded(seed),
                        ..spec.clone()
                    },
                )?;
                mem = r.mem.to_string();
                if !r.passed() {
                    failing.push(seed);
                }
            }
            let per_seed = t.elapsed().as_secs_f64() / seeds as f64;
            let median = harness::median_seeds_to_find(&failing);
            let strat = match depth {
                Some(d) => format!("pct d={d}"),
                None => strategy.name().to_string(),
            };
            crate::outln!(
                "| {label} | {} | {mem} | {strat} | {}/{seeds} | {} | {} | {} |",
                spec.scenario,
                failing.len(),
                failing.first().map_or_else(|| "-".into(), u64::to_string),
                median.map_or_else(|| "not found".into(), |m| m.to_string()),
                median.map_or_else(|| "-".into(), |m| format!("{:.5}", m as f64 * per_seed)),
            );
        }
    }
    Ok(())
}

fn kernel_point(actors: u64, steps: u64, atomics: bool, mode: MemMode) -> (f64, f64, u64) {
    let opts = KernelOptions {
        max_steps: u64::MAX,
        ..KernelOptions::default()
    };
    let mut sim = Sim::new(
        DecisionSource::seeded(1),
        StrategyKind::Random.build(),
        mode,
        opts,
    );
    let cell = sim.alloc_region("counter", 8);
    let per_actor = steps / actors;
    for i in 0..actors {
        let (ctx, cell) = (sim.ctx(), cell.clone());
        sim.spawn(&format!("a{i}"), async move {
            for _ in 0..per_actor {
                if atomics {
                    let _ = cell.rmw(0, 8, RmwOp::Add(1), Ordering::AcqRel).await;
                } else {
                    ctx.yield_now().await;
                }
            }
        });
    }
    let t = Instant::now(); // determinism-ok: benchmark wall time, outside the simulated run being measured.
    let out = sim.run();
    let secs = t.elapsed().as_secs_f64().max(1e-9);
    (
        out.steps as f64 / secs,
        sim.trace_events() as f64 / secs,
        out.steps,
    )
}

/// A benchmark of this project's own components, in a build with them.
fn extras(bench: impl FnOnce() -> Result<(), String>) -> Result<ExitCode, UsageError> {
    bench().map_err(UsageError)?;
    Ok(verdict_code(true))
}

#[cfg(feature = "catalogue")]
fn ring_vcpu() -> Result<(), String> {
    ring::run()
}

#[cfg(feature = "catalogue")]
fn cells(entries: u64) -> Result<(), String> {
    cells::run(entries)
}

#[cfg(not(feature = "catalogue"))]
fn ring_vcpu() -> Result<(), String> {
    Err("this build of sim has no ring pipes (feature `catalogue`)".into())
}

#[cfg(not(feature = "catalogue"))]
fn cells(_entries: u64) -> Result<(), String> {
    Err("this build of sim has no cell host (feature `catalogue`)".into())
}

pub fn run(catalogue: &Catalogue, args: BenchArgs) -> Result<ExitCode, UsageError> {
    // Each seed is a whole run, and `--bugs` sweeps a thousand times as many.
    const MAX_SEEDS: u64 = 10_000_000;
    if args.seeds == 0 || args.seeds > MAX_SEEDS {
        return Err(UsageError(format!(
            "--seeds {} is out of range: between 1 and {MAX_SEEDS}",
            args.seeds
        )));
    }
    if args.kernel_steps == 0 || args.kernel_steps > 1_000_000_000 {
        return Err(UsageError(format!(
            "--kernel-steps {} is out of range: between 1 and 1000000000",
            args.kernel_steps
        )));
    }
    let strategy = StrategyName::parse(&args.strategy).unwrap_or(StrategyName::Random);
    if args.bugs {
        bug_rows(catalogue, args.seeds, args.scenario.as_deref())?;
        return Ok(verdict_code(true));
    }
    if args.ring_vcpu {
        return extras(ring_vcpu);
    }
    if args.cells {
        let thousands = args.seeds * 1000;
        return extras(move || cells(thousands));
    }
    if args.scenario.is_none() {
        crate::outln!("## Kernel (one core, random walk)\n");
        crate::outln!("| actors | kind | mem | steps | decisions/s | events/s |");
        crate::outln!("|---:|---|---|---:|---:|---:|");
        for actors in [1u64, 2, 8, 32, 128, 512] {
            for (kind, atomics, mode) in [
                ("yield", false, MemMode::Sc),
                ("atomic rmw", true, MemMode::Sc),
                ("atomic rmw", true, MemMode::Relaxed),
            ] {
                let (dps, eps, steps) = kernel_point(actors, args.kernel_steps, atomics, mode);
                crate::outln!("| {actors} | {kind} | {mode} | {steps} | {dps:.0} | {eps:.0} |");
            }
        }
        crate::outln!();
    }
    crate::outln!(
        "## Scenarios ({} seeds each, one core, strategy {})\n",
        args.seeds,
        strategy.name()
    );
    crate::outln!(
        "| scenario | mem | seeds/s | mean steps | decisions/s | events/s | sim-time speedup | pipe bytes/s | failing seeds |"
    );
    crate::outln!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    let names: Vec<String> = match &args.scenario {
        Some(s) => vec![s.clone()],
        None => catalogue
            .scenarios()
            .iter()
            .map(|s| s.name().to_string())
            .collect(),
    };
    for name in names {
        let mut spec = RunSpec::seeded(&name, 0);
        spec.strategy = strategy;
        harness::validate(catalogue, &spec)?;
        let (mut steps, mut events, mut sim_ns, mut failed, mut bytes) =
            (0u64, 0u64, 0u64, 0u64, 0u64);
        let mut mem = String::new();
        let t = Instant::now(); // determinism-ok: benchmark wall time, outside the simulated runs being measured.
        for seed in 0..args.seeds {
            spec.source = simkit::DecisionMode::Seeded(seed);
            let r = harness::run(catalogue, &spec)?;
            steps += r.steps;
            events += r.events;
            sim_ns += r.sim_ns;
            failed += u64::from(!r.passed());
            bytes += r
                .metrics
                .iter()
                .filter(|(k, _)| *k == "pipe_bytes")
                .map(|(_, v)| v)
                .sum::<u64>();
            mem = r.mem.to_string();
        }
        let secs = t.elapsed().as_secs_f64().max(1e-9);
        crate::outln!(
            "| {name} | {mem} | {:.0} | {} | {:.0} | {:.0} | {:.1}x | {} | {failed} |",
            args.seeds as f64 / secs,
            steps / args.seeds.max(1),
            steps as f64 / secs,
            events as f64 / secs,
            sim_ns as f64 / 1e9 / secs,
            if bytes > 0 {
                format!("{:.0}", bytes as f64 / secs)
            } else {
                "-".to_string()
            },
        );
    }
    Ok(verdict_code(true))
}
