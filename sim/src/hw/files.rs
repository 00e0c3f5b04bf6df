//! `sim hw --scenario pipe-file`: the pipe-file workload on real parts (`hw_metal`): the
//! bare-metal guest in a KVM vCPU, the real monitor on tokio, and its file relay serving REAL
//! files in a fresh directory under the OS temp dir (`monitor::HostDir`), removed afterwards.
//! The plan (files, concurrency, operations per file) and where ring cursors start are derived
//! from the seed exactly as the simulation derives them.
//!
//! The guest reports each file's request/reply log and the pipe placements it saw; the
//! simulation's oracle (`scenarios::judge_file`) replays every log against the reference file
//! model and compares the result with the real file's bytes read back from the directory, and
//! checks region ownership; [`MetalRun::violations`](crate::hw::metal::MetalRun::violations) adds
//! the hardware run's own checks. The reports are untrusted guest bytes: one that does not
//! decode is a violation.
//!
//! Conformance with the simulation: the guest's run-time choices (which operation, how many
//! bytes, where to seek) come from a seeded xorshift in the metal guest, not from the
//! simulation's decision stream, so a hardware run does not write the same bytes as the
//! simulated run of its seed, and the two stores cannot be compared byte for byte. What both
//! forms share is the judgement: the real files must hold exactly what the reference model
//! computes from the guest's log, as the simulated store must.
//!
//! Planted bugs: `pipe-free-before-close` (the monitor frees a pipe when its relay ends, before
//! the guest closes it) has a hardware form; so do pipe-echo's pipe-level bugs (`hw_pipes`),
//! whose guest and rings this workload shares.

use crate::exit::UsageError;
use crate::hw::metal::{HardwareBug, MetalSetup, run_metal};
use crate::hw::trace::{Outcome, Trace};
use guest_programs::file::{self, FilePlan, Observed, PLACEMENTS_REPORT, path};
use models::Violation;
use monitor::{HostDir, NoNet};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// The planted bug `plant` names, in its hardware form for this scenario.
fn planted(plant: Option<&str>) -> Result<HardwareBug, UsageError> {
    match plant {
        Some("pipe-free-before-close") if !cfg!(feature = "planted-bugs") => Err(UsageError(
            "planted bug 'pipe-free-before-close' is not compiled in (feature planted-bugs)".into(),
        )),
        Some("pipe-free-before-close") => Ok(HardwareBug {
            monitor: monitor::planted::FREE_BEFORE_GUEST_CLOSE,
            ..HardwareBug::default()
        }),
        other => crate::hw::pipes::planted(other),
    }
}

/// The plan of simulated seed `seed` and where its ring cursors start, drawn in the
/// simulation's order: the plan (`files`, `concurrent`, `f{i}_ops`), then `near_max_cursors`
/// (the pipe world's), then the start (the simulation draws one per pipe, later).
pub fn derive_plan(seed: u64) -> (FilePlan, bool, u64) {
    let mut ds = simkit::DecisionSource::seeded(seed);
    let plan = file::plan(&mut |_, lo, hi| ds.range_inclusive(lo, hi));
    let near_max = ds.range_inclusive(0, 1) == 1;
    let start_cursor = if near_max {
        u64::MAX - ds.choose(4096)
    } else {
        0
    };
    (plan, near_max, start_cursor)
}

/// A fresh directory for one run's files, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(seed: u64) -> Result<Self, UsageError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "sim-hw-pipe-file-{}-{seed}-{nanos}",
            std::process::id()
        ));
        // The workload's files live under `data/`; opening with CREATE makes no directories.
        std::fs::create_dir_all(dir.join("data"))
            .map_err(|e| UsageError(format!("hardware: files directory {}: {e}", dir.display())))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the guest reported, decoded; a report that does not decode, names a file the plan does
/// not have, or comes twice is a violation.
fn decode_reports(plan: &FilePlan, received: &[(u64, Vec<u8>)]) -> (Observed, Vec<Violation>) {
    let mut observed = Observed::default();
    let mut problems = Vec::new();
    let mut placements = false;
    let bad = |what: String| Violation::new("guest-report", what);
    for (index, bytes) in received {
        if *index == PLACEMENTS_REPORT {
            match file::decode_placements(bytes) {
                Ok(_) if placements => problems.push(bad("placements reported twice".into())),
                Ok(p) => {
                    observed.placements = p;
                    placements = true;
                }
                Err(e) => problems.push(bad(format!("placement report: {e}"))),
            }
            continue;
        }
        let Some(i) = usize::try_from(*index).ok().filter(|i| *i < plan.ops.len()) else {
            problems.push(bad(format!(
                "a log for file {index}; the plan has {} files",
                plan.ops.len()
            )));
            continue;
        };
        match file::decode_log(bytes) {
            Ok(log) => {
                if observed.logs.insert(i, log).is_some() {
                    problems.push(bad(format!("file {i}'s log reported twice")));
                }
            }
            Err(e) => problems.push(bad(format!("file {i}'s log: {e}"))),
        }
    }
    if !placements {
        problems.push(bad("no placement report".into()));
    }
    (observed, problems)
}

/// The workload's files as the directory holds them after the run, by the guest's path.
fn stored(plan: &FilePlan, root: &Path) -> (BTreeMap<String, Vec<u8>>, Vec<Violation>) {
    let mut contents = BTreeMap::new();
    let mut problems = Vec::new();
    for i in 0..plan.ops.len() {
        match std::fs::read(root.join(path(i))) {
            Ok(bytes) => {
                contents.insert(path(i), bytes);
            }
            // A missing file is the oracle's to judge.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => problems.push(Violation::new(
                "hardware",
                format!("reading back {}: {e}", path(i)),
            )),
        }
    }
    (contents, problems)
}

/// FNV-1a of a file's bytes, for the trace.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One hardware run of pipe-file with the workload of `seed`; one shared-memory access in
/// `jitter_one_in` on each side is followed by a seeded pause (0: none).
pub fn run_once(seed: u64, plant: Option<&str>, jitter_one_in: u32) -> Result<Outcome, UsageError> {
    let bug = planted(plant)?;
    let (plan, near_max, start_cursor) = derive_plan(seed);
    let scratch = Scratch::new(seed)?;
    let dir = HostDir::new(&scratch.0)
        .map_err(|e| UsageError(format!("hardware: {}: {e}", scratch.0.display())))?;
    let run = run_metal(
        &plan.encode(),
        MetalSetup {
            seed,
            bug,
            jitter_one_in,
            start_cursor,
            files: Rc::new(dir),
            net: NoNet,
        },
        async {},
    )?;
    let (observed, report_problems) = decode_reports(&plan, &run.reports.received);
    let (contents, read_problems) = stored(&plan, &scratch.0);
    drop(scratch);

    let mut violations = run.violations();
    violations.extend(report_problems);
    violations.extend(read_problems);
    violations.extend(scenarios::judge_file(&plan, &observed, &contents));

    // The plan in the simulation's option names (so a run can be matched with its simulated
    // seed), then the run's trace, then what the files hold.
    let ops: String = plan
        .ops
        .iter()
        .enumerate()
        .map(|(i, n)| format!(" f{i}_ops={n}"))
        .collect();
    let mut trace = vec![format!(
        "t=0 host plan files={} concurrent={}{ops} near_max_cursors={}",
        plan.ops.len(),
        u8::from(plan.concurrent),
        u8::from(near_max)
    )];
    trace.extend(run.trace);
    let end_ns = (run.wall_ms * 1e6) as u64;
    for i in 0..plan.ops.len() {
        let (len, hash) = contents
            .get(&path(i))
            .map_or((None, 0), |b| (Some(b.len()), fnv(b)));
        let logged = observed.logs.get(&i).map_or(0, Vec::len);
        trace.push(match len {
            Some(len) => format!(
                "t={end_ns} host file-stored path={} len={len} fnv={hash:016x} exchanges={logged}",
                path(i)
            ),
            None => format!(
                "t={end_ns} host file-missing path={} exchanges={logged}",
                path(i)
            ),
        });
    }
    Ok(Outcome {
        hash: Trace::hash(&trace),
        trace,
        violations,
        wall_ms: run.wall_ms,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use guest_programs::file::{Exchange, Placement, encode_log, encode_placements};

    /// The hardware run draws the plan the simulation records as options for the same seed.
    #[test]
    fn plans_match_the_simulations_options() {
        for seed in 1..=12 {
            let (plan, near_max, _) = derive_plan(seed);
            let report = scenarios::run(&scenarios::RunSpec::seeded("pipe-file", seed)).unwrap();
            let option = |name: &str| {
                report
                    .options
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .unwrap()
            };
            assert_eq!(option("files"), plan.ops.len().to_string(), "seed {seed}");
            assert_eq!(
                option("concurrent"),
                u8::from(plan.concurrent).to_string(),
                "seed {seed}"
            );
            for (i, n) in plan.ops.iter().enumerate() {
                assert_eq!(option(&format!("f{i}_ops")), n.to_string(), "seed {seed}");
            }
            assert_eq!(
                option("near_max_cursors"),
                u8::from(near_max).to_string(),
                "seed {seed}"
            );
        }
    }

    #[test]
    fn bad_reports_are_violations_not_panics() {
        let plan = FilePlan {
            ops: vec![1, 1],
            concurrent: false,
        };
        let log = encode_log(&[Exchange::SeekStart {
            offset: 0,
            pos: Ok(0),
        }]);
        let placements = encode_placements(&[Placement::Closed { id: 1 }]);
        let (observed, problems) = decode_reports(
            &plan,
            &[
                (0, log.clone()),
                (PLACEMENTS_REPORT, placements),
                (0, log.clone()),
                (1, log[..5].to_vec()),
                (7, log),
            ],
        );
        assert_eq!(observed.logs.len(), 1);
        assert_eq!(observed.placements.len(), 1);
        let messages: Vec<&str> = problems.iter().map(|v| v.message.as_str()).collect();
        assert_eq!(problems.len(), 3, "{messages:?}");
        assert!(messages[0].contains("twice"), "{messages:?}");
        assert!(messages[1].contains("file 1's log"), "{messages:?}");
        assert!(messages[2].contains("file 7"), "{messages:?}");
        let (_, problems) = decode_reports(&plan, &[]);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].oracle, "guest-report");
    }
}
