//! One call for a plain `#[test]`: sweep a scenario over seeds and fail with everything needed
//! to reproduce the first failure.

use crate::{Catalogue, RunReport, RunSpec, Scenario, StrategyName};
use simkit::DecisionMode;
use std::ops::Range;

/// Runs `scenario` (no bug planted) over `seeds` under the random walk and PCT, and panics at
/// the first failure with its options line, its violations and how to replay it.
///
/// `SIM_SEED=N` in the environment runs just seed `N` (both strategies) and prints its trace:
/// the replay of a failure this reported.
pub fn check(scenario: &'static dyn Scenario, seeds: Range<u64>) {
    let catalogue = Catalogue::new(vec![scenario]);
    let single = std::env::var("SIM_SEED")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    let seeds = match single {
        Some(s) => s..s.saturating_add(1),
        None => seeds,
    };
    for strategy in [StrategyName::Random, StrategyName::Pct] {
        for seed in seeds.clone() {
            let spec = RunSpec {
                strategy,
                capture_trace: single.is_some(),
                ..RunSpec::seeded(scenario.name(), seed)
            };
            let report = crate::run(&catalogue, &spec)
                .unwrap_or_else(|e| panic!("{}: {e}", scenario.name()));
            if single.is_some() {
                for line in report.trace_lines.iter().flatten() {
                    println!("{line}");
                }
            }
            if !report.passed() {
                panic!("{}", failure(&report, seed));
            }
        }
    }
}

fn failure(report: &RunReport, seed: u64) -> String {
    let options: Vec<String> = report
        .options
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let violations: Vec<String> = report.violations.iter().map(|v| format!("  {v}")).collect();
    let strategy = report.strategy.name();
    let source = match report.source {
        DecisionMode::Seeded(_) => String::new(),
        DecisionMode::Bytes(_) => " (from bytes)".into(),
    };
    format!(
        "scenario {} failed at seed {seed}{source} under {strategy}\noptions: {}\n{}\n{}\n\
         replay: SIM_SEED={seed} cargo test <this test> -- --nocapture \
         (or `sim --scenario {} --seed {seed} --strategy {strategy} --trace` in a binary whose \
         catalogue has it)",
        report.scenario,
        options.join(" "),
        violations.join("\n"),
        report.verdict_line(),
        report.scenario,
    )
}
