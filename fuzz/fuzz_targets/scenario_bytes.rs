//! Whole scenarios driven by fuzzer bytes: a structured header picks the scenario, memory mode,
//! strategy and planted bug; the rest is the decision stream. The harness must never panic, the
//! run must be deterministic, and its consumed stream must replay to the same trace. Oracle
//! failures are expected findings, not crashes; a crash here is a bug in the testbed itself.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use scenarios::{RunSpec, StrategyName};
use simkit::{DecisionMode, MemMode};

#[derive(Arbitrary, Debug)]
struct Header {
    scenario: u8,
    mem: u8,
    pct: bool,
    pct_depth: u8,
    plant: Option<u8>,
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(h) = Header::arbitrary(&mut u) else { return };
    let decisions = u.take_rest().to_vec();
    let catalogue = scenarios::catalogue();
    let scenario = catalogue[h.scenario as usize % catalogue.len()];
    let bugs = scenario.bugs();
    let plant = h.plant.filter(|_| !bugs.is_empty()).map(|i| bugs[i as usize % bugs.len()].name.to_string());
    let spec = RunSpec {
        scenario: scenario.name().to_string(),
        source: DecisionMode::Bytes(decisions),
        strategy: if h.pct { StrategyName::Pct } else { StrategyName::Random },
        pct_depth: Some(1 + u32::from(h.pct_depth % 4)),
        mem: Some(MemMode::ALL[h.mem as usize % 3]),
        plant,
        capture_trace: false,
    };
    let first = scenarios::run(&spec).expect("names come from the catalogue");
    let second = scenarios::run(&spec).expect("names come from the catalogue");
    assert_eq!(first.trace_hash, second.trace_hash, "nondeterministic run");
    let replay = RunSpec { source: DecisionMode::Bytes(first.decisions.clone()), ..spec };
    assert_eq!(scenarios::run(&replay).expect("same spec").trace_hash, first.trace_hash, "consumed stream does not replay");
});
