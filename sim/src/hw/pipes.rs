//! `sim hw --scenario pipe-echo`: the pipe-echo workload on real parts (`hw_metal`), with the
//! plan derived from the seed exactly as the simulation derives it. The guest reports what its
//! receivers got, and the simulation's oracle (`judge_echo`) judges it, with the hardware run's
//! own checks.
//!
//! Planted bugs that can show on hardware: `pipe-eof-before-drain` (the monitor's reader),
//! `pipe-close-no-doorbell`, `pipe-wrap-off-by-one` and `pipe-spin-dead-peer` (the guest's),
//! and `pipe-lost-wakeup` (the guest's halt on the interrupt line's event channel).

use crate::exit::UsageError;
use crate::hw::metal::{HardwareBug, MetalSetup, NoFiles, hardware_bug, run_metal};
use crate::hw::trace::{Outcome, Trace};
use guest_programs::echo;
use monitor::NoNet;
use std::rc::Rc;

/// The planted bug `plant` names, in its hardware form.
pub fn planted(plant: Option<&str>) -> Result<HardwareBug, UsageError> {
    match plant {
        None => Ok(HardwareBug::default()),
        Some(name) => hardware_bug(name)
            .ok_or_else(|| UsageError(format!("planted bug '{name}' has no hardware form"))),
    }
}

/// One hardware run of pipe-echo with the workload of `seed`; one shared-memory access in
/// `jitter_one_in` on each side is followed by a seeded pause (0: none).
pub fn run_once(seed: u64, plant: Option<&str>, jitter_one_in: u32) -> Result<Outcome, UsageError> {
    let bug = planted(plant)?;
    let mut ds = simkit::DecisionSource::seeded(seed);
    let mut derive = |_: &str, lo: u64, hi: u64| ds.range_inclusive(lo, hi);
    let near_max = derive("near_max_cursors", 0, 1) == 1;
    let plan = echo::plan(&mut derive);
    let start_cursor = if near_max {
        u64::MAX - derive("start", 0, 4096)
    } else {
        0
    };
    let run = run_metal(
        &plan.encode(),
        MetalSetup {
            seed,
            bug,
            jitter_one_in,
            start_cursor,
            files: Rc::new(NoFiles),
            net: NoNet,
        },
        async {},
    )?;
    let mut results = echo::Results::default();
    for (pipe, bytes) in &run.reports.received {
        results.received.insert(*pipe as usize, bytes.clone());
    }
    // The metal guest opens the plan's pipes in order and the monitor numbers new pipes from 1
    // (0 is the control pipe), so the plan's i-th pipe is pipe i + 1 on the wire.
    for i in 0..plan.pipes.len() {
        results.pipe_ids.insert(i, i as u64 + 1);
    }
    results.errors = run.reports.errors.clone();
    let mut violations = scenarios::judge_echo(&plan, &results);
    violations.extend(run.violations());
    Ok(Outcome {
        hash: Trace::hash(&run.trace),
        trace: run.trace,
        violations,
        wall_ms: run.wall_ms,
    })
}
