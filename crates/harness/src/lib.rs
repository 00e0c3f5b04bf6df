//! The public harness of the testbed: what a scenario is, how one runs, and how a catalogue of
//! them is handed to the `sim` command, the fuzzer and plain tests.
//!
//! - [`Scenario`]: a world built under the simulation kernel, run, and judged by its oracles;
//!   [`PlantedBug`]s prove the oracles see. [`Setup`] is what a scenario builds into.
//! - [`Catalogue`]: the scenarios a binary knows, as a value (`sim::main_with(catalogue)` gives
//!   a downstream binary every `sim` subcommand).
//! - [`run`]: one run from a [`RunSpec`] (scenario, decision source, strategy, memory mode,
//!   planted bug) to a [`RunReport`] (verdict, trace hash, every derived option, the decision
//!   bytes it consumed). The liveness and crash oracle ([`liveness`]) is added to every run.
//! - [`check`]: a scenario swept over seeds from a plain `#[test]`.
//!
//! See `docs/writing-a-scenario.md` for a walk through a scenario of one's own.

mod catalogue;
mod check;
pub mod liveness;
mod report;
mod run;
mod scenario;
mod setup;
mod spec;
mod stats;
mod violation;

pub use catalogue::Catalogue;
pub use check::check;
pub use report::{Observed, RunReport, source_label};
pub use run::{resolved_mem, run, validate};
pub use scenario::{Goal, PlantedBug, Scenario, ScenarioKind};
pub use setup::Setup;
pub use spec::{RunSpec, SpecError, StrategyName};
pub use stats::median_seeds_to_find;
pub use violation::Violation;
