//! WASM module bytes from an untrusted packager, through the cell host on wasmi: load (parse,
//! validate, bind imports, run the start function, take its start image), then `init`, a few
//! steps with payloads cut from the input, a call from outside, `shutdown` and `close`. Every
//! stage ends in a result or a typed error; no input may panic the host or make an entry run
//! without end (each is bounded by a small fuel budget, and by a bound on polls here).

use cellhost::abi::StepEnvelope;
use cellhost::engine::wasmi::WasmiEngine;
use cellhost::standalone::{FixedSlice, Quiet, block_on};
use cellhost::{CellHost, HostConfig, Registry, manifest};
use std::rc::Rc;

/// Every capability, so the fuzzer reaches each host function's argument checks.
const MANIFEST: &str = "name = \"fuzzed\"\nversion = \"1.0.0\"\n\
    capabilities = [\"storage.kv\", \"channel\", \"logging\"]\n";

/// Polls per entry: an entry finishes in one poll here (nothing the host awaits stays
/// pending); many more means it is stuck.
const POLLS: u64 = 10_000;

/// Budgets small enough for many inputs a second, large enough for the test cells' entries.
fn config() -> HostConfig {
    HostConfig {
        start_fuel: 2_000_000,
        fuel_per_entry: 1_000_000,
        alloc_fuel: 200_000,
        max_memory: 16 << 20,
        max_response: 1 << 16,
        ..HostConfig::default()
    }
}

/// Runs one module through the host; panics only on a host defect (a hang).
pub fn run(wasm: &[u8]) {
    let host = CellHost::new(
        WasmiEngine::default(),
        Registry::standard(),
        Rc::new(Quiet),
        FixedSlice(100_000),
        config(),
    );
    let spec = match manifest::parse(MANIFEST) {
        Ok(spec) => spec,
        Err(e) => panic!("the fixed manifest does not parse: {e}"),
    };
    let Ok(cell) = host.load(spec, wasm) else {
        return;
    };
    let name = cell.name().to_string();
    let stuck = |what: &str| -> ! { panic!("{what} never finished") };
    if block_on(host.init(&name), POLLS).is_none() {
        stuck("init");
    }
    // Payloads: the module's own bytes, cut in a few pieces (deterministic in the input).
    let cut = wasm.len() / 4;
    for (n, chunk) in [&wasm[..cut.min(64)], &[][..], &wasm[cut..(cut + 16).min(wasm.len())]]
        .iter()
        .enumerate()
    {
        let envelope = StepEnvelope {
            call_number: n as u64,
            wall_time_ns: 0,
            payload: chunk.to_vec(),
        };
        if block_on(host.step(&name, &envelope), POLLS).is_none() {
            stuck("a step");
        }
    }
    if block_on(host.call(&name, "get", &wasm[..wasm.len().min(8)]), POLLS).is_none() {
        stuck("a call");
    }
    if block_on(host.shutdown(&name), POLLS).is_none() {
        stuck("shutdown");
    }
    if block_on(host.close(&name), POLLS).is_none() {
        stuck("close");
    }
}
