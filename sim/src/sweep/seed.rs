//! One seed of a sweep, run in this process: its verdict, and for a failure its replay file and
//! (for the first ones) its picture, written before the verdict is handed on. A child process of
//! an isolated sweep runs exactly this too, so both ways write the same files.

use crate::replay_file::ReplayFile;
use crate::shard::Shard;
use crate::summary::Failure;
use harness::{Catalogue, RunSpec};
use serde::{Deserialize, Serialize};
use serde_json::json;
use simkit::DecisionMode;
use std::collections::BTreeMap;
use std::path::Path;

/// A seed's verdict, as a worker hands it to the driver (and a child process to its parent, as
/// one JSON line).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    Passed {
        seed: u64,
        obs: SeedObs,
    },
    Failed(Box<Found>),
    /// Something other than the run went wrong (a file that cannot be written): the sweep stops.
    Error {
        seed: u64,
        message: String,
    },
}

impl Outcome {
    pub fn seed(&self) -> u64 {
        match self {
            Outcome::Passed { seed, .. } | Outcome::Error { seed, .. } => *seed,
            Outcome::Failed(found) => found.failure.seed,
        }
    }
}

/// What a seed observed that the sweep tallies: goals reached, faults armed and fired, and the
/// coverage features this worker had not reported before (so a worker's stream of features
/// dries up as its coverage saturates, whatever the number of seeds).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SeedObs {
    pub new_features: Vec<u64>,
    pub goals: Vec<String>,
    /// (kind, armed, times fired)
    pub faults: Vec<(String, bool, u64)>,
}

/// The features a worker has reported so far.
pub type Reported = std::collections::HashSet<u64>;

impl SeedObs {
    pub fn of(observed: &harness::Observed, reported: &mut Reported) -> Self {
        SeedObs {
            new_features: observed
                .features
                .iter()
                .copied()
                .filter(|f| reported.insert(*f))
                .collect(),
            goals: observed.goals.iter().map(|(g, _)| g.to_string()).collect(),
            faults: observed
                .faults
                .iter()
                .map(|(k, c)| (k.clone(), c.armed, c.fired))
                .collect(),
        }
    }
}

/// A failing seed, its files already written.
#[derive(Debug, Serialize, Deserialize)]
pub struct Found {
    pub failure: Failure,
    pub obs: SeedObs,
    /// The `--json` object of the failure.
    pub event: serde_json::Value,
}

/// What a seed is run with.
pub struct SeedContext<'a> {
    pub catalogue: &'a Catalogue,
    pub spec: &'a RunSpec,
    pub dir: &'a Path,
    pub shard: Shard,
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The `--json` object of a failure.
pub fn failure_event(
    failure: &Failure,
    dir: &Path,
    violations: Vec<serde_json::Value>,
) -> serde_json::Value {
    let replay = dir.join(&failure.replay);
    json!({
        "type": "failure",
        "seed": failure.seed,
        "trace_hash": failure.trace_hash,
        "violations": violations,
        "replay_file": replay.display().to_string(),
        "report_html": failure.html.as_ref().map(|h| dir.join(h).display().to_string()),
        "replay_command": ReplayFile::replay_command(&replay),
    })
}

/// Runs `seed`; for a failure, runs it again keeping its trace, and writes its replay file and,
/// when `picture`, its picture.
pub fn run(cx: &SeedContext<'_>, seed: u64, picture: bool, reported: &mut Reported) -> Outcome {
    let error = |message: String| Outcome::Error { seed, message };
    let spec = RunSpec {
        source: DecisionMode::Seeded(seed),
        ..cx.spec.clone()
    };
    let report = match harness::run(cx.catalogue, &spec) {
        Ok(r) => r,
        Err(e) => return error(e.to_string()),
    };
    let obs = SeedObs::of(&report.observed, reported);
    if report.passed() {
        return Outcome::Passed { seed, obs };
    }
    // The same run again, its trace kept: for the replay file and the picture.
    let full = match harness::run(
        cx.catalogue,
        &RunSpec {
            capture_trace: true,
            ..spec
        },
    ) {
        Ok(r) => r,
        Err(e) => return error(e.to_string()),
    };
    let mut file = ReplayFile::from_report(&full, cx.spec.pct_depth);
    file.shard = (!cx.shard.is_whole()).then(|| cx.shard.to_string());
    let replay = cx.dir.join(format!("seed-{seed}.json"));
    if let Err(e) = file.write(&replay) {
        return error(format!("cannot write {}: {e}", replay.display()));
    }
    let html = if picture {
        let path = cx.dir.join(format!("seed-{seed}.html"));
        let page = crate::report::render(&full, &file, Some(&replay));
        if let Err(e) = crate::files::write_atomic(&path, page.as_bytes()) {
            return error(format!("cannot write {}: {e}", path.display()));
        }
        Some(file_name(&path))
    } else {
        None
    };
    let mut oracles = BTreeMap::new();
    for v in &report.violations {
        *oracles.entry(v.oracle.to_string()).or_insert(0) += 1;
    }
    let failure = Failure {
        seed,
        trace_hash: format!("{:016x}", report.trace_hash),
        first_violation: report
            .violations
            .first()
            .map(ToString::to_string)
            .unwrap_or_default(),
        oracles,
        replay: file_name(&replay),
        html,
    };
    let event = failure_event(
        &failure,
        cx.dir,
        report
            .violations
            .iter()
            .map(crate::json::violation)
            .collect(),
    );
    Outcome::Failed(Box::new(Found {
        failure,
        obs,
        event,
    }))
}
