//! What a scenario is: a world built under the kernel, run, and judged by its oracles; and the
//! bugs it can plant to prove those oracles see.

use crate::{Setup, Violation};
use simkit::{KernelOptions, MemMode};

/// A bug compiled in behind a `planted-bugs` feature and switched on by name for one run.
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

/// A sometimes-assertion: a state the scenario's workload must reach at least once across a
/// sweep (an embargo holding calls while a promise resolves, a ring wrapping while its reader
/// is parked). Observers report reaching it with `Ctx::reached(name)`; a sweep lists each goal
/// with the seeds that reached it, and names a goal no seed reached as a gap.
#[derive(Clone, Copy, Debug)]
pub struct Goal {
    pub name: &'static str,
    pub description: &'static str,
}

/// What the acceptance sweeps expect of a scenario with no bug planted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScenarioKind {
    /// A component's workload: every seed must pass.
    Component,
    /// A memory-model litmus test: whether a weak outcome shows depends on the memory mode.
    Litmus,
    /// A known bug kept to calibrate a strategy: it is meant to fail sometimes.
    Calibration,
}

impl ScenarioKind {
    pub fn name(self) -> &'static str {
        match self {
            ScenarioKind::Component => "component",
            ScenarioKind::Litmus => "litmus",
            ScenarioKind::Calibration => "calibration",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "component" => Some(ScenarioKind::Component),
            "litmus" => Some(ScenarioKind::Litmus),
            "calibration" => Some(ScenarioKind::Calibration),
            _ => None,
        }
    }
}

/// One scenario: a world built into [`Setup`], run, and judged.
///
/// `run` builds the world (actors, shared memory, devices) in `setup.sim`, drawing every
/// option from the decision source with [`Setup::derive`], calls [`Setup::run`] once to run it,
/// and returns what its oracles found. The harness adds the liveness and crash oracle
/// (`harness::liveness`) to every run, so a scenario judges only what is its own.
///
/// ```
/// use harness::{Catalogue, RunSpec, Scenario, Setup, Violation};
/// use simkit::Ordering;
///
/// /// Two actors each add 1 to a shared counter with a read-modify-write: no update is lost.
/// struct Counter;
///
/// impl Scenario for Counter {
///     fn name(&self) -> &'static str { "counter" }
///     fn description(&self) -> &'static str { "two increments of one shared counter" }
///     fn expected_steps(&self) -> u64 { 10 }
///     fn run(&self, setup: &mut Setup) -> Vec<Violation> {
///         let counter = setup.sim.alloc_region("counter", 8);
///         for name in ["a", "b"] {
///             let c = counter.clone();
///             setup.sim.spawn(name, async move {
///                 c.rmw(0, 8, simkit::RmwOp::Add(1), Ordering::SeqCst).await.ok();
///             });
///         }
///         setup.run();
///         let total = counter.peek_u64(0).unwrap_or(0);
///         if total == 2 { vec![] } else { vec![Violation::new("counter", format!("total {total}"))] }
///     }
/// }
///
/// static COUNTER: Counter = Counter;
/// let catalogue = Catalogue::new(vec![&COUNTER]);
/// let report = harness::run(&catalogue, &RunSpec::seeded("counter", 7)).unwrap();
/// assert!(report.passed(), "{:?}", report.violations);
/// ```
pub trait Scenario: Sync {
    fn name(&self) -> &'static str;
    fn description(&self) -> &'static str;

    /// What the acceptance sweeps expect of it (default: a component that must always pass).
    fn kind(&self) -> ScenarioKind {
        ScenarioKind::Component
    }

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

    /// The sometimes-goals its workload must reach across a sweep.
    fn goals(&self) -> &'static [Goal] {
        &[]
    }

    /// Builds the world in `setup.sim`, runs it with [`Setup::run`], and returns what the
    /// scenario's own oracles found.
    fn run(&self, setup: &mut Setup) -> Vec<Violation>;
}
