//! The replay file: everything needed to reproduce one run exactly, as JSON.
//!
//! It holds the seed (or the decision bytes), the scenario, the strategy, the memory mode, the
//! planted bug, every option the run derived, the git commit, the rustc version, the trace hash
//! and the verdict. Reading one is a trust boundary: a corrupt or foreign file is a typed error.

use scenarios::{RunReport, RunSpec, StrategyName};
use serde::{Deserialize, Serialize};
use simkit::{DecisionMode, MemMode};
use std::fmt;
use std::path::Path;

pub const FORMAT: &str = "simkit-replay";
pub const VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReplayFile {
    pub format: String,
    pub version: u32,
    pub scenario: String,
    /// The seed, for a seeded run.
    pub seed: Option<u64>,
    /// The decision bytes (hex), for a run driven by bytes (fuzzer input, a shrunk stream).
    pub decisions_hex: Option<String>,
    pub strategy: String,
    pub pct_depth: Option<u32>,
    pub mem: String,
    pub plant: Option<String>,
    /// Every option the run derived, in order.
    pub options: Vec<(String, String)>,
    pub commit: String,
    pub rustc: String,
    pub trace_hash: String,
    pub events: u64,
    pub verdict: String,
    pub violations: Vec<String>,
    /// The decision stream the run consumed (hex): replaying it as bytes gives the same run,
    /// and a shrinker can cut it down.
    pub consumed_decisions_hex: String,
}

#[derive(Debug)]
pub enum ReplayError {
    Io(String, std::io::Error),
    Json(String),
    Foreign(String),
    Version(u32),
    Field(&'static str, String),
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayError::Io(path, e) => write!(f, "cannot read replay file {path}: {e}"),
            ReplayError::Json(e) => write!(
                f,
                "replay file is not valid JSON of the expected shape: {e}"
            ),
            ReplayError::Foreign(found) => {
                write!(
                    f,
                    "not a simkit replay file (format is '{found}', expected '{FORMAT}')"
                )
            }
            ReplayError::Version(v) => write!(
                f,
                "replay file version {v} is not supported (this build reads {VERSION})"
            ),
            ReplayError::Field(name, why) => {
                write!(f, "replay file field '{name}' is invalid: {why}")
            }
        }
    }
}

impl std::error::Error for ReplayError {}

pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn from_hex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err("odd number of hex digits".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| {
                    format!(
                        "'{}' at offset {i} is not a hex byte",
                        s.get(i..i + 2).unwrap_or("?")
                    )
                })
        })
        .collect()
}

pub fn build_info() -> (&'static str, &'static str) {
    (env!("SIM_GIT_COMMIT"), env!("SIM_RUSTC_VERSION"))
}

impl ReplayFile {
    pub fn from_report(report: &RunReport, pct_depth: Option<u32>) -> Self {
        let (commit, rustc) = build_info();
        let (seed, decisions_hex) = match &report.source {
            DecisionMode::Seeded(s) => (Some(*s), None),
            DecisionMode::Bytes(b) => (None, Some(to_hex(b))),
        };
        Self {
            format: FORMAT.into(),
            version: VERSION,
            scenario: report.scenario.into(),
            seed,
            decisions_hex,
            strategy: report.strategy.name().into(),
            pct_depth,
            mem: report.mem.name().into(),
            plant: report.plant.map(str::to_string),
            options: report.options.clone(),
            commit: commit.into(),
            rustc: rustc.into(),
            trace_hash: format!("{:016x}", report.trace_hash),
            events: report.events,
            verdict: if report.passed() {
                "pass".into()
            } else {
                "fail".into()
            },
            violations: report.violations.iter().map(ToString::to_string).collect(),
            consumed_decisions_hex: to_hex(&report.decisions),
        }
    }

    pub fn parse(text: &str) -> Result<Self, ReplayError> {
        // Check the format marker first, so a foreign JSON file gets a clear message.
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ReplayError::Json(e.to_string()))?;
        match value.get("format").and_then(|f| f.as_str()) {
            Some(FORMAT) => {}
            Some(other) => return Err(ReplayError::Foreign(other.to_string())),
            None => return Err(ReplayError::Foreign("<missing>".into())),
        }
        if let Some(v) = value.get("version").and_then(|v| v.as_u64())
            && v != u64::from(VERSION)
        {
            return Err(ReplayError::Version(v as u32));
        }
        let file: ReplayFile =
            serde_json::from_value(value).map_err(|e| ReplayError::Json(e.to_string()))?;
        file.spec()?;
        Ok(file)
    }

    pub fn read(path: &Path) -> Result<Self, ReplayError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ReplayError::Io(path.display().to_string(), e))?;
        Self::parse(&text)
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, json + "\n")
    }

    /// The run this file describes.
    pub fn spec(&self) -> Result<RunSpec, ReplayError> {
        let source = match (&self.seed, &self.decisions_hex) {
            (Some(seed), None) => DecisionMode::Seeded(*seed),
            (None, Some(hex)) => DecisionMode::Bytes(
                from_hex(hex).map_err(|e| ReplayError::Field("decisions_hex", e))?,
            ),
            _ => {
                return Err(ReplayError::Field(
                    "seed",
                    "exactly one of 'seed' and 'decisions_hex' must be set".into(),
                ));
            }
        };
        let strategy = StrategyName::parse(&self.strategy).ok_or_else(|| {
            ReplayError::Field(
                "strategy",
                format!("'{}' is not random or pct", self.strategy),
            )
        })?;
        let mem = MemMode::parse(&self.mem).ok_or_else(|| {
            ReplayError::Field("mem", format!("'{}' is not sc, tso or relaxed", self.mem))
        })?;
        if self.trace_hash.len() != 16 || u64::from_str_radix(&self.trace_hash, 16).is_err() {
            return Err(ReplayError::Field(
                "trace_hash",
                format!("'{}' is not 16 hex digits", self.trace_hash),
            ));
        }
        from_hex(&self.consumed_decisions_hex)
            .map_err(|e| ReplayError::Field("consumed_decisions_hex", e))?;
        Ok(RunSpec {
            scenario: self.scenario.clone(),
            source,
            strategy,
            pct_depth: self.pct_depth,
            mem: Some(mem),
            plant: self.plant.clone(),
            capture_trace: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_errors() {
        assert_eq!(
            from_hex(&to_hex(&[0, 1, 0xab, 0xff])),
            Ok(vec![0, 1, 0xab, 0xff])
        );
        assert!(from_hex("abc").is_err());
        assert!(from_hex("zz").is_err());
    }

    #[test]
    fn foreign_and_corrupt_files_are_typed_errors() {
        assert!(matches!(ReplayFile::parse("{"), Err(ReplayError::Json(_))));
        assert!(matches!(
            ReplayFile::parse(r#"{"name":"x"}"#),
            Err(ReplayError::Foreign(_))
        ));
        assert!(matches!(
            ReplayFile::parse(r#"{"format":"other"}"#),
            Err(ReplayError::Foreign(_))
        ));
        assert!(matches!(
            ReplayFile::parse(r#"{"format":"simkit-replay","version":99}"#),
            Err(ReplayError::Version(99))
        ));
        assert!(matches!(
            ReplayFile::parse(r#"{"format":"simkit-replay","version":1}"#),
            Err(ReplayError::Json(_))
        ));
    }
}
