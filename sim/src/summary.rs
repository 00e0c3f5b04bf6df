//! A sweep's summary as data: `summary.json`, with `summary.md` rendered from it beside it. It
//! says what ran (scenario, strategy, options, build, shard), how it ended (running, complete,
//! interrupted, stopped by an error), and every failure with its replay file; `sim merge` reads
//! these to merge the shards of one sweep. Both files are rewritten as the sweep goes and a last
//! time however it ends, atomically.

use crate::limits::{JSON_FAILURES, SUMMARY_ROWS};
use crate::replay_file::ReplayFile;
use crate::shard::Shard;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

pub const FORMAT: &str = "simkit-sweep";
pub const VERSION: u32 = 1;
/// A summary larger than this is not one we wrote (`JSON_FAILURES` rows of a few hundred bytes).
pub const MAX_BYTES: u64 = 256 << 20;

/// How a sweep ended, or that it has not yet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Status {
    Running,
    Complete,
    /// Stopped by this signal after writing what it had.
    Interrupted {
        signal: i32,
    },
    /// Stopped by an error (a file that could not be written, a worker that could not start).
    Error {
        message: String,
    },
}

/// One failing seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failure {
    pub seed: u64,
    /// 16 hex digits (all zeros for a run that crashed its process).
    pub trace_hash: String,
    pub first_violation: String,
    /// Each oracle that failed, with its violation count.
    pub oracles: BTreeMap<String, u64>,
    /// The replay file's name, in the report directory.
    pub replay: String,
    /// The picture's name, when one was drawn.
    pub html: Option<String>,
}

/// Seeds that reached a sometimes-goal.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GoalTally {
    /// The scenario's words for it (empty for a goal reached that it does not declare).
    pub description: String,
    pub seeds: u64,
}

/// How a fault kind (or buggify site) fared across the seeds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultTally {
    /// Seeds in which it was switched on.
    pub armed_seeds: u64,
    /// Seeds in which it fired at least once.
    pub fired_seeds: u64,
    /// Times it fired, over all seeds.
    pub fired: u64,
}

/// Abstract-state coverage of the sweep: distinct features, and how their number grew (seeds
/// run, features) at powers of two. The features themselves are in `coverage.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CoverageTally {
    pub features: u64,
    pub curve: Vec<(u64, u64)>,
}

/// Failing seeds and violations of one oracle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OracleCount {
    pub seeds: u64,
    pub violations: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSummary {
    pub format: String,
    pub version: u32,
    pub scenario: String,
    pub strategy: String,
    /// As given (`None`: the scenario's or the planted bug's default).
    pub mem: Option<String>,
    pub plant: Option<String>,
    pub pct_depth: Option<u32>,
    /// The whole sweep's range; this shard holds part of it.
    pub seeds: (u64, u64),
    pub shard: Shard,
    pub stop_at_first: bool,
    /// `thread` or `process` (`process:K`: a child process per K seeds).
    pub isolation: String,
    pub commit: String,
    pub rustc: String,
    pub status: Status,
    /// Seeds that ran.
    pub ran: u64,
    pub failing: u64,
    pub by_oracle: BTreeMap<String, OracleCount>,
    /// The smallest failing seeds, in order, at most [`JSON_FAILURES`] of them; each has its
    /// replay file in the directory.
    pub failures: Vec<Failure>,
    /// With `--stop-at-first`: failing seeds other workers found above the first before they
    /// stopped (their replay files stay in the directory).
    pub extra_after_first: u64,
    pub wall_seconds: f64,
    /// Every goal the scenario declares (reached or not), and any other reached.
    pub goals: BTreeMap<String, GoalTally>,
    pub faults: BTreeMap<String, FaultTally>,
    pub coverage: CoverageTally,
}

/// The name of the file beside `summary.json` that holds the sweep's coverage features.
pub const COVERAGE_FILE: &str = "coverage.json";

impl SweepSummary {
    /// Declares the scenario's goals, so a goal never reached shows as a gap.
    pub fn declare_goals(&mut self, goals: &[harness::Goal]) {
        for g in goals {
            self.goals
                .entry(g.name.to_string())
                .or_default()
                .description = g.description.into();
        }
    }

    /// Tallies what one seed observed; `features` is the sweep's number of distinct features
    /// after it.
    pub fn observe(&mut self, goals: &[String], faults: &[(String, bool, u64)], features: u64) {
        for g in goals {
            self.goals.entry(g.clone()).or_default().seeds += 1;
        }
        for (kind, armed, fired) in faults {
            let t = self.faults.entry(kind.clone()).or_default();
            t.armed_seeds += u64::from(*armed);
            t.fired_seeds += u64::from(*fired > 0);
            t.fired += fired;
        }
        self.coverage.features = features;
        let seen = self.ran + 1;
        if seen.is_power_of_two() {
            self.coverage.curve.push((seen, features));
        }
    }

    /// Declared goals no seed reached.
    pub fn gaps(&self) -> Vec<&str> {
        self.goals
            .iter()
            .filter(|(_, g)| g.seeds == 0)
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// Fault kinds switched on in some seed that never fired in any.
    pub fn never_fired(&self) -> Vec<&str> {
        self.faults
            .iter()
            .filter(|(_, f)| f.armed_seeds > 0 && f.fired_seeds == 0)
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// Reads the coverage features written beside the summary in `dir`.
    pub fn read_features(dir: &Path) -> Result<Vec<u64>, String> {
        let path = dir.join(COVERAGE_FILE);
        let text = crate::files::read_bounded(&path, MAX_BYTES)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| format!("{}: not a list of features: {e}", path.display()))
    }

    /// Writes the coverage features beside the summary.
    pub fn write_features(
        dir: &Path,
        features: &std::collections::BTreeSet<u64>,
    ) -> std::io::Result<()> {
        let json = serde_json::to_string(&features.iter().collect::<Vec<_>>())
            .map_err(std::io::Error::other)?;
        crate::files::write_atomic(&dir.join(COVERAGE_FILE), json.as_bytes())
    }

    /// Seeds this shard holds.
    pub fn planned(&self) -> u64 {
        self.shard.len(self.seeds.0, self.seeds.1)
    }

    pub fn first_failure(&self) -> Option<u64> {
        self.failures.first().map(|f| f.seed)
    }

    /// Counts a failing seed, keeping the [`JSON_FAILURES`] smallest as rows.
    pub fn add(&mut self, f: Failure) {
        self.failing += 1;
        for (o, n) in &f.oracles {
            let c = self.by_oracle.entry(o.clone()).or_default();
            c.seeds += 1;
            c.violations += n;
        }
        let at = self.failures.partition_point(|g| g.seed < f.seed);
        self.failures.insert(at, f);
        self.failures.truncate(JSON_FAILURES);
    }

    /// With `--stop-at-first`, only the smallest failing seed counts, whatever other workers
    /// found before they stopped.
    pub fn keep_first_only(&mut self) {
        let Some(first) = self.failures.first().cloned() else {
            return;
        };
        self.extra_after_first = self.failing - 1;
        self.failures.clear();
        self.by_oracle.clear();
        self.failing = 0;
        // Every seed of the shard below the first failure ran, and nothing above it counts.
        self.ran = (0..)
            .map_while(|k| self.shard.nth(self.seeds.0, self.seeds.1, k))
            .take_while(|&s| s <= first.seed)
            .count() as u64;
        self.add(first);
    }

    pub fn read(dir: &Path) -> Result<SweepSummary, String> {
        let path = dir.join("summary.json");
        let text = crate::files::read_bounded(&path, MAX_BYTES)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
        let (format, version) = (
            value.get("format").and_then(|v| v.as_str()),
            value.get("version").and_then(|v| v.as_u64()),
        );
        if format != Some(FORMAT) || version != Some(u64::from(VERSION)) {
            return Err(format!(
                "{}: format {} version {} (this build reads {FORMAT} version {VERSION})",
                path.display(),
                format.unwrap_or("<missing>"),
                version.map_or_else(|| "<missing>".to_string(), |v| v.to_string())
            ));
        }
        serde_json::from_value(value)
            .map_err(|e| format!("{}: not a sweep summary: {e}", path.display()))
    }

    /// Writes `summary.json` and `summary.md`, each atomically.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        crate::files::write_atomic(&dir.join("summary.json"), (json + "\n").as_bytes())?;
        crate::files::write_atomic(&dir.join("summary.md"), self.markdown().as_bytes())
    }

    /// The command that runs this sweep (or shard).
    pub fn command(&self) -> String {
        let mut cmd = format!(
            "sim sweep --scenario {} --seeds {}..{} --strategy {}",
            self.scenario, self.seeds.0, self.seeds.1, self.strategy
        );
        if let Some(d) = self.pct_depth {
            let _ = write!(cmd, " --pct-depth {d}");
        }
        if let Some(m) = &self.mem {
            let _ = write!(cmd, " --mem {m}");
        }
        if let Some(p) = &self.plant {
            let _ = write!(cmd, " --plant {p}");
        }
        if !self.shard.is_whole() {
            let _ = write!(cmd, " --shard {}", self.shard);
        }
        if self.stop_at_first {
            cmd.push_str(" --stop-at-first");
        }
        cmd
    }

    fn state_line(&self) -> String {
        let planned = self.planned();
        match &self.status {
            Status::Running => format!(
                "**running**: {} of {planned} seeds so far (this file is rewritten as the sweep goes on)",
                self.ran
            ),
            Status::Complete if self.stop_at_first && self.failing > 0 => {
                "complete (stopped at the first failing seed, as asked)".into()
            }
            Status::Complete => "complete".into(),
            Status::Interrupted { signal } => format!(
                "**interrupted** by {} after {} of {planned} seeds; every failure found so far is below",
                crate::signals::Signals::describe(*signal).0,
                self.ran
            ),
            Status::Error { message } => format!(
                "**stopped by an error** after {} of {planned} seeds: {message}",
                self.ran
            ),
        }
    }

    fn observations_markdown(&self, md: &mut String) {
        let _ = writeln!(
            md,
            "- coverage: {} abstract-state features ({})\n",
            self.coverage.features,
            self.coverage
                .curve
                .iter()
                .map(|(s, f)| format!("{f} after {s}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if !self.goals.is_empty() {
            let _ = writeln!(
                md,
                "## Sometimes-goals\n\n| goal | seeds reaching it | what it is |\n|---|---|---|"
            );
            for (name, g) in &self.goals {
                let seeds = if g.seeds == 0 {
                    "**0: never reached (a gap)**".to_string()
                } else {
                    g.seeds.to_string()
                };
                let _ = writeln!(md, "| {name} | {seeds} | {} |", g.description);
            }
            let _ = writeln!(md);
        }
        if !self.faults.is_empty() {
            let _ = writeln!(
                md,
                "## Faults\n\n| fault | seeds armed | seeds fired | times fired |\n|---|---|---|---|"
            );
            for (name, f) in &self.faults {
                let fired = if f.fired_seeds == 0 {
                    "**0: never fired**".to_string()
                } else {
                    f.fired_seeds.to_string()
                };
                let _ = writeln!(md, "| {name} | {} | {fired} | {} |", f.armed_seeds, f.fired);
            }
            let _ = writeln!(md);
        }
    }

    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Sweep of `{}`\n", self.scenario);
        let _ = writeln!(md, "- status: {}", self.state_line());
        let _ = writeln!(md, "- command: `{}`", self.command());
        if !self.shard.is_whole() {
            let _ = writeln!(
                md,
                "- shard: {} (every {}th seed of the range from {}; `sim merge` joins the shards)",
                self.shard,
                self.shard.count,
                self.seeds.0 + self.shard.index
            );
        }
        let _ = writeln!(md, "- isolation: {}", self.isolation);
        let _ = writeln!(md, "- build: commit `{}`, `{}`", self.commit, self.rustc);
        let _ = writeln!(md, "- seeds run: {} of {}", self.ran, self.planned());
        let _ = writeln!(md, "- failing seeds: {}", self.failing);
        let _ = writeln!(
            md,
            "- first failing seed: {}",
            self.first_failure()
                .map_or_else(|| "none".to_string(), |s| s.to_string())
        );
        let _ = writeln!(
            md,
            "- wall time: {:.2} s ({:.1} seeds/s)\n",
            self.wall_seconds,
            self.ran as f64 / self.wall_seconds.max(1e-9)
        );
        if self.extra_after_first > 0 {
            let _ = writeln!(
                md,
                "Other workers found {} more failing seed(s) above it before they stopped; their replay files are in this directory too.\n",
                self.extra_after_first
            );
        }
        self.observations_markdown(&mut md);
        if self.by_oracle.is_empty() {
            return md;
        }
        let _ = writeln!(
            md,
            "## Violations by oracle\n\n| oracle | failing seeds | violations |\n|---|---|---|"
        );
        for (o, c) in &self.by_oracle {
            let _ = writeln!(md, "| {o} | {} | {} |", c.seeds, c.violations);
        }
        let _ = writeln!(
            md,
            "\n## Failing seeds\n\nEach has a replay file and, for the first ones, a picture of the run (`.html`, self-contained).\n"
        );
        let rows = self.failures.len().min(SUMMARY_ROWS);
        if self.failing as usize > rows {
            let _ = writeln!(
                md,
                "The {rows} smallest failing seeds are listed; every one has its replay file.\n"
            );
        }
        let _ = writeln!(
            md,
            "| seed | trace | first violation | report | replay |\n|---|---|---|---|---|"
        );
        for f in &self.failures[..rows] {
            let html = f
                .html
                .as_ref()
                .map_or_else(|| "`sim report` it".into(), |h| format!("[{h}]({h})"));
            let _ = writeln!(
                md,
                "| {} | `{}` | {} | {html} | `{}` |",
                f.seed,
                f.trace_hash,
                f.first_violation.replace('|', "\\|"),
                ReplayFile::replay_command(Path::new(&f.replay))
            );
        }
        md
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn failure(seed: u64, oracle: &str, violations: u64) -> Failure {
        Failure {
            seed,
            trace_hash: format!("{seed:016x}"),
            first_violation: format!("[{oracle}] seed {seed}"),
            oracles: [(oracle.to_string(), violations)].into_iter().collect(),
            replay: format!("seed-{seed}.json"),
            html: None,
        }
    }

    pub(crate) fn summary(stop_at_first: bool) -> SweepSummary {
        SweepSummary {
            format: FORMAT.into(),
            version: VERSION,
            scenario: "s".into(),
            strategy: "random".into(),
            mem: None,
            plant: None,
            pct_depth: None,
            seeds: (10, 110),
            shard: Shard::WHOLE,
            stop_at_first,
            isolation: "thread".into(),
            commit: "c".into(),
            rustc: "r".into(),
            status: Status::Running,
            ran: 0,
            failing: 0,
            by_oracle: BTreeMap::new(),
            failures: Vec::new(),
            extra_after_first: 0,
            wall_seconds: 1.0,
            goals: BTreeMap::new(),
            faults: BTreeMap::new(),
            coverage: CoverageTally::default(),
        }
    }

    #[test]
    fn counts_failing_seeds_not_violations_and_says_how_it_ended() {
        let dir = std::env::temp_dir().join(format!("sim-summary-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let mut s = summary(false);
        s.ran = 40;
        s.add(failure(30, "liveness", 3));
        s.add(failure(12, "liveness", 1));
        s.add(failure(20, "conservation", 2));
        assert_eq!(s.first_failure(), Some(12));
        assert_eq!(
            s.by_oracle["liveness"],
            OracleCount {
                seeds: 2,
                violations: 4
            }
        );
        s.status = Status::Interrupted { signal: 2 };
        s.write(&dir).expect("written");
        let md = std::fs::read_to_string(dir.join("summary.md")).expect("read");
        assert!(
            md.contains("**interrupted** by SIGINT after 40 of 100 seeds"),
            "{md}"
        );
        assert!(md.contains("| liveness | 2 | 4 |"), "{md}");
        assert!(md.contains("`sim replay seed-12.json --trace`"), "{md}");
        assert_eq!(SweepSummary::read(&dir).expect("reads back"), s);
        // With --stop-at-first only the smallest failing seed counts.
        let mut s = summary(true);
        s.add(failure(30, "liveness", 1));
        s.add(failure(12, "liveness", 1));
        s.keep_first_only();
        assert_eq!(
            (s.failing, s.ran, s.first_failure(), s.extra_after_first),
            (1, 3, Some(12), 1)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn foreign_or_corrupt_summaries_are_refused_with_the_path() {
        let dir = std::env::temp_dir().join(format!("sim-summary-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        for (text, says) in [
            ("{", "not JSON"),
            (r#"{"format":"other","version":1}"#, "format other"),
            (r#"{"format":"simkit-sweep","version":9}"#, "version 9"),
            (
                r#"{"format":"simkit-sweep","version":1}"#,
                "not a sweep summary",
            ),
        ] {
            std::fs::write(dir.join("summary.json"), text).expect("write");
            let e = SweepSummary::read(&dir).expect_err(text);
            assert!(e.contains(says) && e.contains("summary.json"), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
