//! Shared helpers for the scenario tests.
#![allow(dead_code)]

use scenarios::{RunReport, RunSpec, StrategyName};
use simkit::{DecisionMode, MemMode};

pub fn spec(scenario: &str, seed: u64, mem: Option<MemMode>, strategy: StrategyName) -> RunSpec {
    RunSpec {
        mem,
        strategy,
        ..RunSpec::seeded(scenario, seed)
    }
}

pub fn run(spec: &RunSpec) -> RunReport {
    match scenarios::run(spec) {
        Ok(r) => r,
        Err(e) => panic!("bad spec {spec:?}: {e}"),
    }
}

/// The first failing seed in `0..budget`, if any.
pub fn first_failure(base: &RunSpec, budget: u64) -> Option<u64> {
    (0..budget).find(|seed| {
        !run(&RunSpec {
            source: DecisionMode::Seeded(*seed),
            ..base.clone()
        })
        .passed()
    })
}

/// Failing seeds in `0..n`.
pub fn failing_seeds(base: &RunSpec, n: u64) -> Vec<u64> {
    (0..n)
        .filter(|seed| {
            !run(&RunSpec {
                source: DecisionMode::Seeded(*seed),
                ..base.clone()
            })
            .passed()
        })
        .collect()
}
