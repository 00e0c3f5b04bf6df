//! WASM cell scenarios: the real cell host on wasmi, its environment simulated.

pub mod dir;
pub mod drive;
pub mod go;
pub mod hostile;
pub mod lifecycle;
pub mod siblings;
pub mod world;

use cellhost::abi::StepEnvelope;
use models::Violation;
use std::collections::BTreeMap;

/// A step envelope carrying a call path ("" is an idle tick).
pub fn envelope(call_number: u64, now_ns: u64, path: &str) -> StepEnvelope {
    StepEnvelope {
        call_number,
        wall_time_ns: now_ns,
        payload: path.as_bytes().to_vec(),
    }
}

/// What a `node` step or call answered: `Ok((cell, count))` for a count (from `me` for an idle
/// tick, else from the path's last cell), `Err(value)` for a negated `pulp_call` code.
pub fn path_value(me: &str, path: &str, value: i64) -> Result<(String, i64), i64> {
    if value <= 0 {
        return Err(value);
    }
    let cell = if path.is_empty() {
        me
    } else {
        path.rsplit('/').next().unwrap_or(me)
    };
    Ok((cell.to_string(), value))
}

/// The counts each `node` cell answered (idle ticks and leaf calls) must be exactly 1..=n: a
/// reference model of the cell (it counts its inputs) under one serial order of its entries, so
/// the same inputs gave the same outputs and no increment was lost, doubled or misrouted.
pub fn check_counts(counts: &BTreeMap<String, Vec<i64>>) -> Vec<Violation> {
    let mut v = Vec::new();
    for (cell, seen) in counts {
        let mut sorted = seen.clone();
        sorted.sort_unstable();
        let want: Vec<i64> = (1..=sorted.len() as i64).collect();
        if sorted != want {
            v.push(
                Violation::new(
                    "cell-outputs",
                    format!(
                        "cell {cell} answered counts {sorted:?}; one serial order gives {want:?}"
                    ),
                )
                .kind("not-serial")
                .object(format!("cell {cell}")),
            );
        }
    }
    v
}

/// Kernel limits for the cell scenarios (a spinning cell's fuel budget is many slices).
pub fn kernel_options() -> simkit::KernelOptions {
    simkit::KernelOptions {
        buggify: true,
        max_steps: 2_000_000,
        ..simkit::KernelOptions::default()
    }
}
