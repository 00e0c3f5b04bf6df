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

/// Median seeds-to-find: the gaps between consecutive failing seeds (counting from seed 0) are
/// independent samples of "seeds until the bug is found".
pub fn median_seeds_to_find(failing: &[u64]) -> Option<u64> {
    let mut gaps: Vec<u64> = failing
        .iter()
        .scan(0u64, |prev, s| {
            let g = s + 1 - *prev;
            *prev = s + 1;
            Some(g)
        })
        .collect();
    gaps.sort_unstable();
    gaps.get(gaps.len() / 2).copied()
}
