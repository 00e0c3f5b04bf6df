//! Runs one scenario under one decision stream and strategy, and reports.

use crate::{PlantedBug, Scenario, find, find_bug};
use models::Violation;
use simkit::{Ctx, DecisionMode, DecisionSource, MemMode, Sim, StrategyKind};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrategyName {
    Random,
    Pct,
}

impl StrategyName {
    pub fn name(self) -> &'static str {
        match self {
            StrategyName::Random => "random",
            StrategyName::Pct => "pct",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "random" => Some(StrategyName::Random),
            "pct" => Some(StrategyName::Pct),
            _ => None,
        }
    }
}

/// What to run. Unset fields take the scenario's (or the planted bug's) defaults.
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub scenario: String,
    pub source: DecisionMode,
    pub strategy: StrategyName,
    pub pct_depth: Option<u32>,
    pub mem: Option<MemMode>,
    pub plant: Option<String>,
    pub capture_trace: bool,
}

impl RunSpec {
    pub fn seeded(scenario: &str, seed: u64) -> Self {
        Self {
            scenario: scenario.to_string(),
            source: DecisionMode::Seeded(seed),
            strategy: StrategyName::Random,
            pct_depth: None,
            mem: None,
            plant: None,
            capture_trace: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpecError {
    UnknownScenario(String),
    UnknownBug(String),
    BugInOtherScenario {
        bug: String,
        scenario: String,
        wanted: String,
    },
    PlantedBugsNotCompiled(String),
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::UnknownScenario(s) => write!(f, "unknown scenario '{s}' (see `sim --list`)"),
            SpecError::UnknownBug(b) => {
                write!(f, "unknown planted bug '{b}' (see `sim --list-bugs`)")
            }
            SpecError::BugInOtherScenario {
                bug,
                scenario,
                wanted,
            } => {
                write!(
                    f,
                    "planted bug '{bug}' belongs to scenario '{scenario}', not '{wanted}'"
                )
            }
            SpecError::PlantedBugsNotCompiled(b) => {
                write!(
                    f,
                    "cannot plant '{b}': this build has no planted bugs (enable feature `planted-bugs`)"
                )
            }
        }
    }
}

impl std::error::Error for SpecError {}

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

/// The world a scenario builds into, plus the run's recorded options and planted bug.
pub struct Setup {
    pub sim: Sim,
    options: Vec<(String, String)>,
    plant: Option<&'static str>,
    metrics: Vec<(&'static str, u64)>,
}

impl Setup {
    pub fn ctx(&self) -> Ctx {
        self.sim.ctx()
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

fn resolve(
    spec: &RunSpec,
) -> Result<(&'static dyn Scenario, Option<&'static PlantedBug>), SpecError> {
    let scenario =
        find(&spec.scenario).ok_or_else(|| SpecError::UnknownScenario(spec.scenario.clone()))?;
    let bug = match &spec.plant {
        None => None,
        Some(name) => {
            let bug = find_bug(name).ok_or_else(|| SpecError::UnknownBug(name.clone()))?;
            if bug.scenario != scenario.name() {
                return Err(SpecError::BugInOtherScenario {
                    bug: name.clone(),
                    scenario: bug.scenario.to_string(),
                    wanted: scenario.name().to_string(),
                });
            }
            if !cfg!(feature = "planted-bugs") {
                return Err(SpecError::PlantedBugsNotCompiled(name.clone()));
            }
            Some(bug)
        }
    };
    Ok((scenario, bug))
}

/// Checks names without running anything.
pub fn validate(spec: &RunSpec) -> Result<(), SpecError> {
    resolve(spec).map(|_| ())
}

pub fn run(spec: &RunSpec) -> Result<RunReport, SpecError> {
    let (scenario, bug) = resolve(spec)?;
    let mem = spec
        .mem
        .or(bug.and_then(|b| b.needs_mem))
        .unwrap_or(MemMode::Tso);
    let mut opts = scenario.kernel_options();
    opts.capture_trace = spec.capture_trace;
    let mut options = vec![("mem".to_string(), mem.name().to_string())];
    let strategy = match spec.strategy {
        StrategyName::Random => StrategyKind::Random,
        StrategyName::Pct => {
            let depth = spec.pct_depth.unwrap_or(3);
            let steps = scenario.expected_steps();
            options.push(("pct_depth".into(), depth.to_string()));
            options.push(("pct_steps".into(), steps.to_string()));
            StrategyKind::Pct { depth, steps }
        }
    };
    options.extend(opts.describe());
    let sim = Sim::new(
        DecisionSource::new(spec.source.clone()),
        strategy.build(),
        mem,
        opts,
    );
    let mut setup = Setup {
        sim,
        options,
        plant: bug.map(|b| b.name),
        metrics: Vec::new(),
    };
    if let Some(b) = bug {
        setup.option("plant", b.name);
    }
    let violations = scenario.run(&mut setup);
    let Setup {
        mut sim,
        options,
        metrics,
        ..
    } = setup;
    let (steps, sim_ns) = sim.with_kernel(|k| (k.step(), k.now()));
    Ok(RunReport {
        scenario: scenario.name(),
        source: spec.source.clone(),
        strategy: spec.strategy,
        mem,
        plant: bug.map(|b| b.name),
        options,
        trace_hash: sim.trace_hash(),
        events: sim.trace_events(),
        trace_lines: sim.take_trace_lines(),
        violations,
        decisions: sim.recorded_decisions(),
        draws: sim.decision_count(),
        steps,
        sim_ns,
        metrics,
    })
}
