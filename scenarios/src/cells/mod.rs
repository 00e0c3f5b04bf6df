//! WASM cell scenarios: the real cell host on wasmi, its environment simulated.

pub mod lifecycle;
pub mod siblings;
pub mod world;

use cellhost::abi::StepEnvelope;

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
