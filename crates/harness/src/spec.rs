//! What to run: a scenario by name, a decision source, a strategy and the run's shape.

use simkit::{DecisionMode, MemMode};
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
    /// A PCT depth outside `1..=max`: d - 1 change points among a run's steps cannot exceed
    /// the steps the run may take.
    PctDepth {
        depth: u32,
        scenario: String,
        max: u64,
    },
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
            SpecError::PctDepth {
                depth,
                scenario,
                max,
            } => write!(
                f,
                "PCT depth {depth} is out of range: it must be between 1 and {max}, the step budget of a '{scenario}' run"
            ),
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
