//! Our scenario catalogue: the ring pipes, the cell host and the RPC engine, each with its
//! workload, faults, oracles and planted bugs, plus the memory-model litmus tests and a
//! calibration bug. The harness (`harness`) runs them; `sim` is handed [`catalogue()`].

mod calibration;
pub mod cells;
mod litmus;
mod mailbox;
mod pipes;
mod rpc;

pub use harness::{
    Catalogue, PlantedBug, RunReport, RunSpec, Scenario, ScenarioKind, Setup, SpecError,
    StrategyName, Violation, median_seeds_to_find, source_label,
};
/// `pipe-echo`'s oracles, for runs of its guest workload outside the simulation.
pub use pipes::echo::judge_echo;
/// `pipe-file`'s oracles and their views of what the guest logged, for runs outside the
/// simulation.
pub use pipes::file::{file_exchange, judge_file, placement_event};
pub use pipes::tcp::{PeerRecord, PeerRecords, judge_tcp};

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
    &cells::go::CellsGo,
    &rpc::TWO_PARTY,
    &rpc::THREE_VAT,
    &rpc::HANDOFF,
    &rpc::VsCapnpRpc,
];

/// Every scenario of ours, `mailbox` first (the default).
pub fn catalogue() -> Catalogue {
    Catalogue::new(CATALOGUE.to_vec())
        .with_default(DEFAULT_SCENARIO)
        .with_resolver(cells::dir::resolve)
}

pub fn find(name: &str) -> Option<&'static dyn Scenario> {
    CATALOGUE
        .iter()
        .copied()
        .find(|s| s.name() == name)
        .or_else(|| cells::dir::resolve(name))
}

pub fn all_bugs() -> impl Iterator<Item = &'static PlantedBug> {
    CATALOGUE.iter().flat_map(|s| s.bugs().iter())
}

pub fn find_bug(name: &str) -> Option<&'static PlantedBug> {
    all_bugs().find(|b| b.name == name)
}

/// One run of one of our scenarios ([`harness::run`] over [`catalogue()`]).
pub fn run(spec: &RunSpec) -> Result<RunReport, SpecError> {
    harness::run(&catalogue(), spec)
}

/// Checks a spec's names against our catalogue without running anything.
pub fn validate(spec: &RunSpec) -> Result<(), SpecError> {
    harness::validate(&catalogue(), spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_consistent_and_every_bug_mirrors_a_real_one() {
        assert_eq!(catalogue().check_consistent(), Ok(()));
        assert!(find(DEFAULT_SCENARIO).is_some());
        for bug in all_bugs() {
            assert!(!bug.mirrors.is_empty(), "{}", bug.name);
        }
    }
}
