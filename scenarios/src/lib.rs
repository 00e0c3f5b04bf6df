//! The scenario catalogue. A scenario builds a simulated world (actors, shared memory, devices),
//! runs it under the kernel, and hands what it observed to the oracles in `models`.
//!
//! `run(spec)` is the single entry point used by the `sim` command, the tests and the fuzzer:
//! it resolves names, derives every option from the decision source, runs, and returns a report
//! with the verdict, the trace hash and everything needed to replay the run.

mod calibration;
mod doorbell;
mod harness;
mod litmus;
mod mailbox;

pub use harness::{
    RunReport, RunSpec, Setup, SpecError, StrategyName, run, source_label, validate,
};
pub use models::Violation;

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
