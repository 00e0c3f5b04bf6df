//! The world a scenario builds into, and what the run records about itself.

use crate::Violation;
use simkit::{Ctx, RunOutcome, Sim};
use std::fmt;

/// The world a scenario builds into, plus the run's recorded options and planted bug.
pub struct Setup {
    pub sim: Sim,
    pub(crate) options: Vec<(String, String)>,
    pub(crate) plant: Option<&'static str>,
    pub(crate) metrics: Vec<(&'static str, u64)>,
    /// What the liveness oracle found, once the world has run.
    pub(crate) liveness: Option<Vec<Violation>>,
    /// Where the world's run ended: what the scenario's own oracles, judging afterwards, point
    /// at unless they say otherwise.
    pub(crate) end_at: Option<simkit::At>,
}

impl Setup {
    /// Runs the world to its end (quiescence, or a step or time limit) and returns the
    /// kernel's outside view of it. The harness judges liveness and crashes from it; the
    /// scenario judges the rest.
    pub fn run(&mut self) -> RunOutcome {
        let outcome = self.sim.run();
        self.liveness = Some(crate::liveness::check(&outcome));
        self.end_at = Some(outcome.end_at);
        outcome
    }

    pub fn ctx(&self) -> Ctx {
        self.sim.ctx()
    }

    /// Where the run is now (step, virtual time, last trace line): for an oracle that can tell
    /// a failure while the world runs, to mark where.
    pub fn position(&self) -> simkit::At {
        self.sim.with_kernel(|k| k.position())
    }

    /// Draws an option in `lo..=hi` from the decision source and records it.
    pub fn derive(&mut self, name: &str, lo: u64, hi: u64) -> u64 {
        let v = self
            .sim
            .with_kernel(|k| k.decisions().range_inclusive(lo, hi));
        self.option(name, v);
        v
    }

    /// Records a measured quantity (not an option: it does not affect the run).
    pub fn metric(&mut self, name: &'static str, value: u64) {
        self.metrics.push((name, value));
    }

    /// Records a fixed option.
    pub fn option(&mut self, name: &str, value: impl fmt::Display) {
        self.options.push((name.to_string(), value.to_string()));
    }

    /// Whether the named planted bug is switched on for this run. Always false in a build
    /// without the `planted-bugs` feature, so the bug's code folds away.
    pub fn planted(&self, bug: &str) -> bool {
        cfg!(feature = "planted-bugs") && self.plant == Some(bug)
    }
}
