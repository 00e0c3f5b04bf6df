//! What the fuzz targets share: the `scenario_bytes` input format (a header choosing the
//! scenario, memory mode, strategy and planted bug, then the decision stream), read by the
//! target and written by the seed-corpus builder.

pub mod cell_module;
pub mod wasi_calls;

use scenarios::{RunSpec, StrategyName};
use simkit::{DecisionMode, MemMode};

/// One input in this many gets the determinism and replay double-check.
pub const CHECK_EVERY: u64 = 16;

/// Header bytes before the decision stream.
pub const HEADER_LEN: usize = 5;

/// The run an input describes: byte 0 the scenario, 1 the memory mode, 2 the strategy (PCT
/// when odd) and PCT depth, 3 whether to plant a bug (odd) and 4 which; the rest is the
/// decision stream. `None` for an input too short to have a header.
pub fn header_spec(data: &[u8]) -> Option<RunSpec> {
    if data.len() < HEADER_LEN {
        return None;
    }
    let catalogue = scenarios::catalogue();
    let all = catalogue.scenarios();
    let scenario = all[data[0] as usize % all.len()];
    let bugs = scenario.bugs();
    let plant = (data[3] % 2 == 1 && !bugs.is_empty())
        .then(|| bugs[data[4] as usize % bugs.len()].name.to_string());
    Some(RunSpec {
        scenario: scenario.name().to_string(),
        source: DecisionMode::Bytes(data[HEADER_LEN..].to_vec()),
        strategy: if data[2] % 2 == 1 {
            StrategyName::Pct
        } else {
            StrategyName::Random
        },
        pct_depth: Some(1 + u32::from(data[2] / 2 % 4)),
        mem: Some(MemMode::ALL[data[1] as usize % 3]),
        plant,
        capture_trace: false,
    })
}

/// The header for scenario number `index` of the catalogue, with the given shape.
pub fn header(index: usize, mem: usize, pct: bool, bug: Option<usize>) -> [u8; HEADER_LEN] {
    [
        index as u8,
        mem as u8,
        u8::from(pct) + 2 * 2, // PCT depth 3
        u8::from(bug.is_some()),
        bug.unwrap_or(0) as u8,
    ]
}
