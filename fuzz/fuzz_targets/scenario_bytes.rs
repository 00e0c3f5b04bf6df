//! Whole scenarios driven by fuzzer bytes: a structured header picks the scenario, memory mode,
//! strategy and planted bug; the rest is the decision stream (`fuzz/src/bin/seed_corpus.rs`
//! writes real runs' streams in this format as the starting corpus). The harness must never
//! panic. On a sample of inputs (one in `CHECK_EVERY`, chosen by the input's own hash, so the
//! same input is always checked or never) the run must also be deterministic and its consumed
//! stream must replay to the same trace: checking every input would triple the cost of the
//! one thing this target exists to do, exploring runs. Oracle failures are expected findings,
//! not crashes; a crash here is a bug in the testbed itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scenarios::RunSpec;
use simkit::DecisionMode;
use simkit_fuzz::{CHECK_EVERY, header_spec};

fuzz_target!(|data: &[u8]| {
    let Some(spec) = header_spec(data) else { return };
    let first = scenarios::run(&spec).expect("names come from the catalogue");
    if simkit::fnv1a_of(data) % CHECK_EVERY != 0 {
        return;
    }
    let second = scenarios::run(&spec).expect("names come from the catalogue");
    assert_eq!(first.trace_hash, second.trace_hash, "nondeterministic run");
    let replay = RunSpec {
        source: DecisionMode::Bytes(first.decisions.clone()),
        ..spec
    };
    assert_eq!(
        scenarios::run(&replay).expect("same spec").trace_hash,
        first.trace_hash,
        "consumed stream does not replay"
    );
});
