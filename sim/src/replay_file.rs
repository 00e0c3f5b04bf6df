//! The replay file: everything needed to reproduce one run exactly, as JSON.
//!
//! It holds the seed (or the decision bytes), the scenario, the strategy, the memory mode, the
//! planted bug, every option the run derived, the git commit, the rustc version, the trace hash
//! and the verdict, and (when the run's trace was kept and is small) its trace lines, so a replay
//! that diverges can name the first line that differs. Reading one is a trust boundary: a
//! corrupt, foreign or oversized file is a typed error, read through a bounded reader.
//! Writing one is atomic (a temporary file renamed into place), so a sweep stopped at any
//! moment leaves whole files or none.

use harness::{RunReport, RunSpec, StrategyName};
use serde::{Deserialize, Serialize};
use simkit::{DecisionMode, MemMode};
use std::fmt;
use std::io::Read;
use std::path::Path;

pub const FORMAT: &str = "simkit-replay";
/// Version 2 added the optional kept trace, version 3 the optional shard and the `crash`
/// verdict; older files read the same.
pub const VERSION: u32 = 3;
const OLDEST_VERSION: u32 = 1;

/// Trace lines are kept in a replay file only while they come to at most this many bytes.
pub const TRACE_KEEP_LIMIT: usize = 4 << 20;

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
    /// The run's trace lines, when they were kept and are small enough.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<Vec<String>>,
    /// The shard of a sharded sweep that found it (`I/N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
}

/// The verdict of a run that ended its process (an abort, a stack overflow, a signal) or was
/// killed for running past the sweep's wall-clock limit: no trace, no hash.
pub const CRASH: &str = "crash";

#[derive(Debug)]
pub enum ReplayError {
    Io(String, std::io::Error),
    TooLarge(String),
    Json(String),
    Foreign(String),
    Version(u32),
    Field(&'static str, String),
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayError::Io(path, e) => write!(f, "cannot read replay file {path}: {e}"),
            ReplayError::TooLarge(path) => write!(
                f,
                "replay file {path} is larger than {} MiB, the most a replay file holds: not a replay file",
                crate::limits::REPLAY_FILE_LIMIT >> 20
            ),
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
                "replay file version {v} is not supported (this build reads {OLDEST_VERSION} to {VERSION})"
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
    /// The replay file of a run. Its trace lines are kept when the run kept them and they are
    /// at most [`TRACE_KEEP_LIMIT`] bytes.
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
            trace: report.trace_lines.as_ref().and_then(|lines| {
                let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
                (bytes <= TRACE_KEEP_LIMIT).then(|| lines.clone())
            }),
            shard: None,
        }
    }

    /// The replay file of a seed whose run crashed its process: `sim replay` runs it again in
    /// a child process and says whether it crashes again.
    pub fn crashed(spec: &RunSpec, mem: &str, seed: u64, what: String) -> Self {
        let (commit, rustc) = build_info();
        Self {
            format: FORMAT.into(),
            version: VERSION,
            scenario: spec.scenario.clone(),
            seed: Some(seed),
            decisions_hex: None,
            strategy: spec.strategy.name().into(),
            pct_depth: spec.pct_depth,
            mem: mem.into(),
            plant: spec.plant.clone(),
            options: Vec::new(),
            commit: commit.into(),
            rustc: rustc.into(),
            trace_hash: format!("{:016x}", 0),
            events: 0,
            verdict: CRASH.into(),
            violations: vec![what],
            consumed_decisions_hex: String::new(),
            trace: None,
            shard: None,
        }
    }

    /// The command that replays this file.
    pub fn replay_command(path: &Path) -> String {
        format!(
            "sim replay {} --trace",
            shell_word(&path.display().to_string())
        )
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
            && !(u64::from(OLDEST_VERSION)..=u64::from(VERSION)).contains(&v)
        {
            return Err(ReplayError::Version(v.min(u64::from(u32::MAX)) as u32));
        }
        let file: ReplayFile =
            serde_json::from_value(value).map_err(|e| ReplayError::Json(e.to_string()))?;
        file.spec()?;
        Ok(file)
    }

    /// Reads a replay file through a bounded reader: at most [`crate::limits::REPLAY_FILE_LIMIT`]
    /// bytes are read, whatever the path is (`/dev/zero`, a pipe, a huge file).
    pub fn read(path: &Path) -> Result<Self, ReplayError> {
        let shown = path.display().to_string();
        let io = |e| ReplayError::Io(shown.clone(), e);
        let limit = crate::limits::REPLAY_FILE_LIMIT;
        let file = std::fs::File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if meta.is_dir() {
            return Err(io(std::io::Error::other("it is a directory")));
        }
        if meta.len() > limit {
            return Err(ReplayError::TooLarge(shown));
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize + 1);
        file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
        if bytes.len() as u64 > limit {
            return Err(ReplayError::TooLarge(shown));
        }
        let text = String::from_utf8(bytes)
            .map_err(|_| ReplayError::Json("the file is not UTF-8 text".into()))?;
        Self::parse(&text)
    }

    /// Writes the file atomically: a temporary file beside it, renamed into place.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        crate::files::write_atomic(path, (json + "\n").as_bytes())
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

/// `s` quoted for a POSIX shell where it needs to be.
pub fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
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
        assert!(matches!(
            ReplayFile::parse(r#"{"format":"simkit-replay","version":99999999999}"#),
            Err(ReplayError::Version(_))
        ));
    }

    #[test]
    fn shell_words() {
        assert_eq!(
            shell_word("reports/a-b/seed-1.json"),
            "reports/a-b/seed-1.json"
        );
        assert_eq!(shell_word("my dir/x"), "'my dir/x'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
    }
}
