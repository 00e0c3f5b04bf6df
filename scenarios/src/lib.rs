//! The scenario catalogue. A scenario builds a simulated world (actors, shared memory, devices),
//! runs it under the kernel, and hands what it observed to the oracles in `models`.
//!
//! `run(spec)` is the single entry point used by the `sim` command, the tests and the fuzzer:
//! it resolves names, derives every option from the decision source, runs, and returns a report
//! with the verdict, the trace hash and everything needed to replay the run.

mod calibration;
pub mod cells;
mod harness;
mod litmus;
mod mailbox;
mod pipes;
mod rpc;

pub use harness::{
    RunReport, RunSpec, Setup, SpecError, StrategyName, run, source_label, validate,
};
pub use models::Violation;
/// `pipe-echo`'s oracles, for runs of its guest workload outside the simulation.
pub use pipes::echo::judge_echo;
/// `pipe-file`'s oracles and their views of what the guest logged, for runs outside the
/// simulation.
pub use pipes::file::{file_exchange, judge_file, placement_event};
pub use pipes::tcp::{PeerRecord, PeerRecords, judge_tcp};

use simkit::{KernelOptions, MemMode};

/// A bug compiled in behind the `planted-bugs` feature and switched on by name for one run.
#[derive(Clone, Copy, Debug)]
pub struct PlantedBug {
    pub name: &'static str,
    pub scenario: &'static str,
    pub description: &'static str,
    /// The real-world bug it mirrors.
    pub mirrors: &'static str,
    /// The weakest memory model the bug needs to show, used when a run names no `--mem`.
    pub needs_mem: Option<MemMode>,
}

pub trait Scenario: Sync {
    fn name(&self) -> &'static str;
    fn description(&self) -> &'static str;

    /// Roughly how many scheduling steps one run takes; PCT's `k`.
    fn expected_steps(&self) -> u64;

    fn kernel_options(&self) -> KernelOptions {
        KernelOptions {
            buggify: true,
            ..KernelOptions::default()
        }
    }

    fn bugs(&self) -> &'static [PlantedBug] {
        &[]
    }

    /// Builds the world in `setup.sim`, runs it, and returns what the oracles found.
    fn run(&self, setup: &mut Setup) -> Vec<Violation>;
}

/// The scenario `sim` runs when none is named.
pub const DEFAULT_SCENARIO: &str = "mailbox";

static CATALOGUE: &[&dyn Scenario] = &[
    &mailbox::Mailbox,
    &litmus::LITMUS_SB,
    &litmus::LITMUS_SB_FENCED,
    &litmus::LITMUS_MP,
    &litmus::LITMUS_MP_RELACQ,
    &litmus::LITMUS_LB,
    &litmus::LITMUS_IRIW,
    &calibration::CalibDepth2,
    &pipes::echo::PipeEcho,
    &pipes::file::PipeFile,
    &pipes::hostile::PipeHostile,
    &pipes::tcp::PipeTcp,
    &cells::siblings::CellsSiblings,
    &cells::lifecycle::CellsLifecycle,
    &cells::hostile::CellsHostile,
    &rpc::TWO_PARTY,
    &rpc::THREE_VAT,
    &rpc::HANDOFF,
    &rpc::VsCapnpRpc,
];

pub fn catalogue() -> &'static [&'static dyn Scenario] {
    CATALOGUE
}

pub fn find(name: &str) -> Option<&'static dyn Scenario> {
    CATALOGUE.iter().copied().find(|s| s.name() == name)
}

pub fn all_bugs() -> impl Iterator<Item = &'static PlantedBug> {
    CATALOGUE.iter().flat_map(|s| s.bugs().iter())
}

pub fn find_bug(name: &str) -> Option<&'static PlantedBug> {
    all_bugs().find(|b| b.name == name)
}

/// Median seeds-to-find from the failing seeds of a sweep starting at seed 0: the gaps between
/// consecutive failing seeds (the first counted from seed 0) are independent samples of "seeds
/// until the bug is found".
pub fn median_seeds_to_find(failing: &[u64]) -> Option<u64> {
    let mut prev = 0;
    let mut gaps: Vec<u64> = failing
        .iter()
        .map(|s| {
            let gap = s + 1 - prev;
            prev = s + 1;
            gap
        })
        .collect();
    gaps.sort_unstable();
    gaps.get(gaps.len() / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_seeds_to_find_uses_gaps() {
        // Failing seeds 4, 5, 9: gaps 5, 1, 4 -> median 4.
        assert_eq!(median_seeds_to_find(&[4, 5, 9]), Some(4));
        assert_eq!(median_seeds_to_find(&[0]), Some(1));
        assert_eq!(median_seeds_to_find(&[]), None);
    }

    #[test]
    fn catalogue_names_are_unique_and_bugs_point_at_real_scenarios() {
        let mut names: Vec<_> = catalogue().iter().map(|s| s.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), catalogue().len());
        assert!(find(DEFAULT_SCENARIO).is_some());
        for bug in all_bugs() {
            assert!(
                find(bug.scenario).is_some_and(|s| s.bugs().iter().any(|b| b.name == bug.name)),
                "{}",
                bug.name
            );
            assert!(!bug.mirrors.is_empty());
        }
    }
}
