//! Everything one run produced.

use crate::{StrategyName, Violation};
use simkit::{DecisionMode, MemMode};

/// Everything a run produced.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub scenario: &'static str,
    pub source: DecisionMode,
    pub strategy: StrategyName,
    pub mem: MemMode,
    pub plant: Option<&'static str>,
    /// Every option the run derived (strategy, kernel and scenario), in order.
    pub options: Vec<(String, String)>,
    pub trace_hash: u64,
    pub events: u64,
    pub trace_lines: Option<Vec<String>>,
    pub violations: Vec<Violation>,
    /// The decision stream the run consumed, replayable in bytes mode.
    pub decisions: Vec<u8>,
    pub draws: u64,
    pub steps: u64,
    pub sim_ns: u64,
    /// Quantities the scenario measured (e.g. bytes delivered), for benchmarks.
    pub metrics: Vec<(&'static str, u64)>,
    /// Coverage features (sorted), goals reached and faults armed and fired.
    pub observed: Observed,
}

/// What a run observed besides its verdict (see `simkit::observe`).
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Abstract-state coverage features, sorted.
    pub features: Vec<u64>,
    /// Sometimes-goals reached, with how many times.
    pub goals: Vec<(&'static str, u64)>,
    /// Fault kinds and buggify sites, whether armed and how often they fired.
    pub faults: Vec<(String, simkit::FaultCount)>,
}

impl RunReport {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    pub fn source_label(&self) -> String {
        source_label(&self.source)
    }

    /// The last line `sim` prints for a run.
    pub fn verdict_line(&self) -> String {
        format!(
            "seed={} scenario={} strategy={} events={} trace={:016x} verdict={}",
            self.source_label(),
            self.scenario,
            self.strategy.name(),
            self.events,
            self.trace_hash,
            if self.passed() { "pass" } else { "fail" }
        )
    }
}

pub fn source_label(source: &DecisionMode) -> String {
    match source {
        DecisionMode::Seeded(seed) => seed.to_string(),
        DecisionMode::Bytes(b) => format!("bytes:{:016x}", simkit::fnv1a_of(b)),
    }
}
