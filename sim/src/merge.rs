//! `sim merge [--out DIR] SHARD_DIR...`: merges the report directories of a sharded sweep
//! (`sim sweep --shard I/N`) into one, whose failures, counts and replay files equal those of
//! the same sweep run unsharded.
//!
//! It refuses, with one line and exit 2: shards of different builds, scenarios, strategies,
//! options or seed ranges; a shard given twice; missing shards (named); a shard that did not
//! finish (its seeds are not all covered). A shard that was run again after an interrupted
//! attempt (a retried pod, a requeued array task) is taken from its finished attempt, saying so.
//! Exit 1 when the merged sweep has failures, 0 when it has none, as `sim sweep` does.

use crate::exit::{UsageError, verdict_code};
use crate::limits::JSON_FAILURES;
use crate::shard::Shard;
use crate::summary::{Status, SweepSummary};
use crate::{errln, outln};
use clap::Args;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub struct MergeArgs {
    /// Report directories of the shards (each holds a `summary.json`).
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// Where the merged report goes (default: `merged` beside the first shard's directory).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// What must agree across shards, named for the error.
fn shape(s: &SweepSummary) -> [(&'static str, String); 10] {
    [
        ("commit", s.commit.clone()),
        ("toolchain", s.rustc.clone()),
        ("scenario", s.scenario.clone()),
        ("strategy", s.strategy.clone()),
        ("mem", format!("{:?}", s.mem)),
        ("plant", format!("{:?}", s.plant)),
        ("pct depth", format!("{:?}", s.pct_depth)),
        ("seed range", format!("{}..{}", s.seeds.0, s.seeds.1)),
        ("shard count", s.shard.count.to_string()),
        ("--stop-at-first", s.stop_at_first.to_string()),
    ]
}

fn finished(s: &SweepSummary) -> bool {
    s.status == Status::Complete
}

/// One attempt per shard: a shard given twice is refused, unless exactly one of its attempts
/// finished (the others were cut short and run again); notes say which were set aside.
fn one_per_shard<'a>(
    shards: &'a [(PathBuf, SweepSummary)],
    notes: &mut Vec<String>,
) -> Result<BTreeMap<u64, &'a (PathBuf, SweepSummary)>, String> {
    let mut by_index: BTreeMap<u64, Vec<&(PathBuf, SweepSummary)>> = BTreeMap::new();
    for entry in shards {
        by_index.entry(entry.1.shard.index).or_default().push(entry);
    }
    let mut chosen = BTreeMap::new();
    for (index, attempts) in by_index {
        let done: Vec<_> = attempts.iter().filter(|(_, s)| finished(s)).collect();
        let pick = match (attempts.as_slice(), done.as_slice()) {
            ([one], _) => *one,
            (_, [one]) => {
                for (dir, s) in &attempts {
                    if !finished(s) {
                        notes.push(format!(
                            "shard {}: set aside {}, an attempt that did not finish ({} seeds ran); using {}",
                            s.shard,
                            dir.display(),
                            s.ran,
                            one.0.display()
                        ));
                    }
                }
                **one
            }
            _ => {
                let dirs: Vec<String> = attempts
                    .iter()
                    .map(|(d, _)| d.display().to_string())
                    .collect();
                return Err(format!(
                    "shard {index}/{} is given {} times: {}",
                    attempts[0].1.shard.count,
                    attempts.len(),
                    dirs.join(", ")
                ));
            }
        };
        chosen.insert(index, pick);
    }
    Ok(chosen)
}

/// The merged summary of `shards` (each with the directory it came from), the directories it
/// was made from, and notes on attempts set aside; or why they cannot be merged.
#[allow(clippy::type_complexity)]
pub fn merge(
    shards: &[(PathBuf, SweepSummary)],
) -> Result<(SweepSummary, Vec<PathBuf>, Vec<String>), String> {
    let Some((first_dir, first)) = shards.first() else {
        return Err("no shard directories given".into());
    };
    for (dir, s) in &shards[1..] {
        for ((what, a), (_, b)) in shape(first).iter().zip(shape(s).iter()) {
            if a != b {
                return Err(format!(
                    "{} and {} differ in {what} ({a} against {b}): they are not shards of one sweep",
                    first_dir.display(),
                    dir.display()
                ));
            }
        }
    }
    if first.stop_at_first {
        return Err("shards of a --stop-at-first sweep cannot be merged (each stopped at its own first failure)".into());
    }
    let count = first.shard.count;
    let mut notes = Vec::new();
    let chosen = one_per_shard(shards, &mut notes)?;
    let missing: Vec<String> = (0..count)
        .filter(|i| !chosen.contains_key(i))
        .map(|i| format!("{i}/{count}"))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "missing shards: {} (of {count}; given {})",
            missing.join(", "),
            chosen.len()
        ));
    }
    for (dir, s) in chosen.values() {
        if !finished(s) {
            return Err(format!(
                "shard {} ({}) did not finish: {} of {} seeds ran ({:?})",
                s.shard,
                dir.display(),
                s.ran,
                s.planned(),
                s.status
            ));
        }
    }
    let mut merged = SweepSummary {
        shard: Shard::WHOLE,
        status: Status::Complete,
        ran: 0,
        failing: 0,
        by_oracle: BTreeMap::new(),
        failures: Vec::new(),
        extra_after_first: 0,
        // The shards ran side by side: the merged sweep took as long as the slowest.
        wall_seconds: 0.0,
        goals: BTreeMap::new(),
        faults: BTreeMap::new(),
        coverage: Default::default(),
        ..first.clone()
    };
    for (_, s) in chosen.values() {
        for (name, g) in &s.goals {
            let m = merged.goals.entry(name.clone()).or_default();
            m.description.clone_from(&g.description);
            m.seeds += g.seeds;
        }
        for (name, f) in &s.faults {
            let m = merged.faults.entry(name.clone()).or_default();
            m.armed_seeds += f.armed_seeds;
            m.fired_seeds += f.fired_seeds;
            m.fired += f.fired;
        }
        merged.ran += s.ran;
        merged.failing += s.failing;
        for (o, c) in &s.by_oracle {
            let m = merged.by_oracle.entry(o.clone()).or_default();
            m.seeds += c.seeds;
            m.violations += c.violations;
        }
        merged.failures.extend(s.failures.iter().cloned());
        merged.wall_seconds = merged.wall_seconds.max(s.wall_seconds);
    }
    merged.failures.sort_by_key(|f| f.seed);
    // Each shard kept its smallest; the smallest of all are among them.
    merged.failures.truncate(JSON_FAILURES);
    let dirs = chosen.values().map(|(d, _)| d.clone()).collect();
    Ok((merged, dirs, notes))
}

fn copy_into(from_dir: &Path, name: &str, out: &Path) -> Result<(), UsageError> {
    let (from, to) = (from_dir.join(name), out.join(name));
    std::fs::copy(&from, &to).map(|_| ()).map_err(|e| {
        UsageError(format!(
            "copying {} to {}: {e}",
            from.display(),
            to.display()
        ))
    })
}

pub fn run(args: MergeArgs) -> Result<ExitCode, UsageError> {
    let mut shards = Vec::new();
    for dir in &args.dirs {
        shards.push((dir.clone(), SweepSummary::read(dir).map_err(UsageError)?));
    }
    let (mut merged, dirs, notes) = merge(&shards).map_err(UsageError)?;
    // Coverage is the union of the shards' features.
    let mut features = std::collections::BTreeSet::new();
    for dir in &dirs {
        features.extend(SweepSummary::read_features(dir).map_err(UsageError)?);
    }
    merged.coverage.features = features.len() as u64;
    merged.coverage.curve = vec![(merged.ran, merged.coverage.features)];
    for n in &notes {
        errln!("sim: merge: {n}");
    }
    let out = args.out.unwrap_or_else(|| {
        args.dirs[0]
            .parent()
            .map_or_else(|| PathBuf::from("merged"), |p| p.join("merged"))
    });
    if dirs.iter().any(|d| d == &out) {
        return Err(UsageError(format!(
            "--out {} is one of the shard directories",
            out.display()
        )));
    }
    std::fs::create_dir_all(&out)
        .map_err(|e| UsageError(format!("cannot create {}: {e}", out.display())))?;
    // Every failure's replay file (and picture) comes along, whether or not the summary lists it.
    for dir in &dirs {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| UsageError(format!("cannot list {}: {e}", dir.display())))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("seed-") && (name.ends_with(".json") || name.ends_with(".html")) {
                copy_into(dir, &name, &out)?;
            }
        }
    }
    merged
        .write(&out)
        .and_then(|()| SweepSummary::write_features(&out, &features))
        .map_err(|e| UsageError(format!("writing {}: {e}", out.display())))?;
    outln!("report: {}", out.join("summary.md").display());
    outln!(
        "merge scenario={} strategy={} seeds={}..{} shards={} ran={} failures={} first_failure={}",
        merged.scenario,
        merged.strategy,
        merged.seeds.0,
        merged.seeds.1,
        dirs.len(),
        merged.ran,
        merged.failing,
        merged
            .first_failure()
            .map_or_else(|| "none".to_string(), |f| f.to_string())
    );
    Ok(verdict_code(merged.failing == 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::tests::{failure, summary};

    /// Shard `index` of 3 over 10..110, its failures those of `failing` it holds.
    fn shard(index: u64, failing: &[u64]) -> (PathBuf, SweepSummary) {
        let mut s = summary(false);
        s.shard = Shard { index, count: 3 };
        s.status = Status::Complete;
        s.ran = s.planned();
        let mine = s.shard;
        for &seed in failing.iter().filter(|&&f| mine.holds(10, f)) {
            s.add(failure(seed, "liveness", 2));
        }
        (PathBuf::from(format!("r/shard{index}")), s)
    }

    #[test]
    fn merged_shards_equal_the_whole_sweep() {
        let failing = [12, 13, 14, 50, 99];
        let mut whole = summary(false);
        whole.status = Status::Complete;
        whole.ran = 100;
        for &f in &failing {
            whole.add(failure(f, "liveness", 2));
        }
        let shards: Vec<_> = (0..3).map(|i| shard(i, &failing)).collect();
        let (merged, dirs, notes) = merge(&shards).expect("merges");
        assert_eq!(dirs.len(), 3);
        assert!(notes.is_empty());
        assert_eq!(merged.failures, whole.failures);
        assert_eq!(
            (merged.ran, merged.failing, &merged.by_oracle),
            (whole.ran, whole.failing, &whole.by_oracle)
        );
    }

    #[test]
    fn refuses_mixed_missing_and_twice_given_shards() {
        let mut other = shard(1, &[]);
        other.1.commit = "other".into();
        let e = merge(&[shard(0, &[]), other, shard(2, &[])]).expect_err("mixed");
        assert!(e.contains("differ in commit"), "{e}");
        let mut other = shard(1, &[]);
        other.1.plant = Some("bug".into());
        let e = merge(&[shard(0, &[]), other, shard(2, &[])]).expect_err("mixed");
        assert!(e.contains("differ in plant"), "{e}");
        let e = merge(&[shard(0, &[]), shard(2, &[])]).expect_err("missing");
        assert!(e.contains("missing shards: 1/3"), "{e}");
        let e = merge(&[shard(0, &[]), shard(1, &[]), shard(1, &[]), shard(2, &[])])
            .expect_err("twice");
        assert!(e.contains("shard 1/3 is given 2 times"), "{e}");
        let mut cut = shard(1, &[]);
        cut.1.status = Status::Interrupted { signal: 15 };
        let e = merge(&[shard(0, &[]), cut.clone(), shard(2, &[])]).expect_err("unfinished");
        assert!(e.contains("did not finish"), "{e}");
        // An interrupted attempt beside a finished one is set aside, saying so.
        cut.0 = PathBuf::from("r/shard1-first-try");
        let (_, _, notes) =
            merge(&[shard(0, &[]), cut, shard(1, &[]), shard(2, &[])]).expect("merges");
        assert!(
            notes[0].contains("set aside r/shard1-first-try"),
            "{notes:?}"
        );
    }
}
