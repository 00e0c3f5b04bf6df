//! The determinism gate: every scenario, under every memory mode and both strategies, gives the
//! same trace (line for line) and the same decision stream when run twice with the same seed;
//! the recorded stream replays as bytes to the same trace; and keeping the lines does not change
//! the hash.

mod common;

use scenarios::{RunSpec, StrategyName};
use simkit::{DecisionMode, MemMode};

const SEEDS: u64 = 40;

/// Seeds per scenario: the Go-cell scenario loads four 2.5 MB modules per run (slow in a
/// debug build), so it gets a few.
fn seeds(scenario: &str) -> u64 {
    if scenario == "cells-go" { 3 } else { SEEDS }
}

#[test]
fn every_scenario_is_deterministic_and_replays_from_its_decision_bytes() {
    for scenario in scenarios::catalogue().scenarios() {
        for mem in MemMode::ALL {
            for strategy in [StrategyName::Random, StrategyName::Pct] {
                for seed in 0..seeds(scenario.name()) {
                    let mut spec = common::spec(scenario.name(), seed, Some(mem), strategy);
                    spec.capture_trace = true;
                    let a = common::run(&spec);
                    let b = common::run(&spec);
                    let la = a.trace_lines.as_deref().expect("captured");
                    let lb = b.trace_lines.as_deref().expect("captured");
                    if let Some(i) = (0..la.len().max(lb.len())).find(|i| la.get(*i) != lb.get(*i))
                    {
                        panic!(
                            "{} {mem} {} seed {seed} diverged at event {i}:\n  {:?}\n  {:?}",
                            scenario.name(),
                            strategy.name(),
                            la.get(i),
                            lb.get(i)
                        );
                    }
                    assert_eq!(a.decisions, b.decisions);
                    let uncaptured = common::run(&RunSpec {
                        capture_trace: false,
                        ..spec.clone()
                    });
                    assert_eq!(a.trace_hash, uncaptured.trace_hash);
                    assert_eq!(a.events as usize, la.len());
                    // The consumed stream, replayed as raw bytes, is the same run.
                    let bytes = RunSpec {
                        source: DecisionMode::Bytes(a.decisions.clone()),
                        ..spec.clone()
                    };
                    let c = common::run(&bytes);
                    assert_eq!(
                        c.trace_hash,
                        a.trace_hash,
                        "{} {mem} seed {seed}: byte replay differs",
                        scenario.name()
                    );
                    assert_eq!(c.passed(), a.passed());
                }
            }
        }
    }
}

#[test]
fn different_seeds_explore_different_runs() {
    for scenario in scenarios::catalogue().scenarios() {
        let hashes: std::collections::BTreeSet<u64> = (0..50)
            .map(|s| common::run(&RunSpec::seeded(scenario.name(), s)).trace_hash)
            .collect();
        assert!(
            hashes.len() >= 3,
            "{}: only {} distinct traces in 50 seeds",
            scenario.name(),
            hashes.len()
        );
    }
}

#[test]
fn any_byte_string_is_a_valid_run() {
    // Short, empty and junk streams all run to a verdict (defaults after the bytes run out).
    for scenario in scenarios::catalogue().scenarios() {
        for bytes in [vec![], vec![0xff; 3], (0..=255u8).collect::<Vec<_>>()] {
            let spec = RunSpec {
                source: DecisionMode::Bytes(bytes),
                ..RunSpec::seeded(scenario.name(), 0)
            };
            let r = common::run(&spec);
            assert!(r.steps > 0, "{}", scenario.name());
        }
    }
}
