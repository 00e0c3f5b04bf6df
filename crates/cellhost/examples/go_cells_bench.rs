//! Measures the Go cells (`go-cells/`) on wasmi, and on wasmtime when built with
//! `--features wasmtime`: what each entry costs in fuel, how fast each engine runs Go code
//! (fuel per second of wall time), and what starting a cell costs: compiling its module (once
//! per thread), and making an instance by running `_initialize` or from the start image.
//! Outside any simulation: a plain executor, fixed slices of 10 M fuel, no scheduler in
//! between.
//!
//! ```sh
//! cargo run --release -p cellhost --example go_cells_bench [--features wasmtime] [-- ROUNDS]
//! ```

use cellhost::abi::StepEnvelope;
use cellhost::engine::Engine;
use cellhost::engine::wasmi::WasmiEngine;
use cellhost::{CellHost, HostConfig, HostServices, Pacing, Registry, read_cell_dir, snapshot};
use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

const CELLS: [&str; 6] = ["caller", "caps", "churn", "counter", "exiter", "panicker"];

fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// A clock that moves only when a cell sleeps; no output kept.
#[derive(Default)]
struct Quiet {
    clock: Cell<u64>,
}

impl HostServices for Quiet {
    fn now_ns(&self) -> u64 {
        self.clock.get()
    }
    fn entropy(&self, buf: &mut [u8]) {
        buf.fill(7);
    }
    fn log(&self, _: &str, _: &str) {}
    fn sleep(&self, ns: u64) -> Pin<Box<dyn Future<Output = ()>>> {
        self.clock.set(self.clock.get() + ns);
        Box::pin(std::future::ready(()))
    }
    fn kv_get(&self, _: &str, _: &[u8]) -> Option<Vec<u8>> {
        None
    }
    fn kv_put(&self, _: &str, _: &[u8], _: &[u8]) {}
    fn send(&self, _: &str, _: &str, _: &[u8]) -> bool {
        true
    }
    fn recv(&self, _: &str) -> Option<Vec<u8>> {
        None
    }
}

struct Fixed;

impl Pacing for Fixed {
    fn fuel_slice(&self) -> u64 {
        10_000_000
    }
    fn preempt(&self) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin(std::future::ready(()))
    }
    fn trace(&self, _: &str, _: fmt::Arguments<'_>) {}
}

type Host<E> = CellHost<E, Fixed>;

fn host<E: Engine + Default>(snapshots: bool) -> Host<E> {
    let config = HostConfig {
        snapshots,
        ..HostConfig::default()
    };
    CellHost::new(
        E::default(),
        Registry::standard(),
        Rc::new(Quiet::default()),
        Fixed,
        config,
    )
}

fn envelope(payload: &str) -> StepEnvelope {
    StepEnvelope {
        call_number: 0,
        wall_time_ns: 0,
        payload: payload.as_bytes().to_vec(),
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Fuel of each cell's start, init and first steps.
fn entry_fuel<E: Engine + Default>(name: &str, dir: &Path) {
    println!("\n## {name}: fuel per entry (first use of each cell)\n");
    println!("| cell | _initialize | pulp_init | first step | second step | heaviest step |");
    println!("|---|---:|---:|---:|---:|---:|");
    let h = host::<E>(false);
    let steps: &[(&str, &[&str])] = &[
        ("counter", &["", ""]),
        ("caller", &["counter", "counter"]),
        ("caps", &["put", "get", "rand"]),
        ("churn", &["", "alloc", "work", "sleep"]),
        ("panicker", &["", ""]),
        ("exiter", &["", ""]),
    ];
    for (cell, payloads) in steps {
        let loaded = h
            .load_dir(&dir.join(cell))
            .unwrap_or_else(|e| panic!("{cell}: {e}"));
        block_on(h.init(cell)).unwrap_or_else(|e| panic!("{cell}: {e}"));
        let init = loaded.last_entry_fuel();
        let mut fuel = Vec::new();
        for p in *payloads {
            block_on(h.step(cell, &envelope(p))).unwrap_or_else(|e| panic!("{cell} {p:?}: {e}"));
            fuel.push(loaded.last_entry_fuel());
        }
        let heaviest = fuel.iter().max().copied().unwrap_or(0);
        println!(
            "| {cell} | {} | {init} | {} | {} | {heaviest} |",
            loaded.start_fuel(),
            fuel[0],
            fuel[1]
        );
    }
}

/// Wall time of loading every cell: compile, instantiate, and start-up (running `_initialize`,
/// or from the start image), averaged over `rounds`.
fn startup<E: Engine + Default>(name: &str, dir: &Path, rounds: u32) {
    println!("\n## {name}: start-up, ms per cell (mean of {rounds} rounds)\n");
    println!(
        "| cell | compile | load, running _initialize | load, from the image | _initialize fuel |"
    );
    println!("|---|---:|---:|---:|---:|");
    for cell in CELLS {
        let (spec, wasm) = read_cell_dir(&dir.join(cell)).unwrap_or_else(|e| panic!("{e}"));
        let engine = E::default();
        let t = Instant::now(); // determinism-ok: benchmark wall time, outside any simulation
        for _ in 0..rounds {
            engine.compile(&wasm).unwrap_or_else(|e| panic!("{e}"));
        }
        let compile = ms(t) / f64::from(rounds);
        snapshot::forget_all();
        // One untimed load each way first: the host keeps the compiled module per thread, so
        // the timed loads are instantiate + start-up alone (what every seed of a sweep pays),
        // and the first load with images makes the image.
        host::<E>(false)
            .load(spec.clone(), &wasm)
            .unwrap_or_else(|e| panic!("{e}"));
        host::<E>(true)
            .load(spec.clone(), &wasm)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut start_fuel = 0;
        let t = Instant::now(); // determinism-ok: benchmark wall time, outside any simulation
        for _ in 0..rounds {
            let h = host::<E>(false);
            let c = h
                .load(spec.clone(), &wasm)
                .unwrap_or_else(|e| panic!("{e}"));
            start_fuel = c.start_fuel();
        }
        let fresh = ms(t) / f64::from(rounds);
        let t = Instant::now(); // determinism-ok: benchmark wall time, outside any simulation
        for _ in 0..rounds {
            host::<E>(true)
                .load(spec.clone(), &wasm)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let imaged = ms(t) / f64::from(rounds);
        println!("| {cell} | {compile:.1} | {fresh:.1} | {imaged:.1} | {start_fuel} |");
    }
}

/// Fuel per second of wall time on Go code: the churn cell's allocation step (goroutines,
/// channels, maps, a timer) and its counting step, `rounds` times each.
fn speed<E: Engine + Default>(name: &str, dir: &Path, rounds: u32) {
    println!("\n## {name}: speed on Go code ({rounds} steps each)\n");
    println!("| step | fuel per step | µs per step | fuel per second |");
    println!("|---|---:|---:|---:|");
    let h = host::<E>(true);
    let cell = h
        .load_dir(&dir.join("churn"))
        .unwrap_or_else(|e| panic!("{e}"));
    block_on(h.init("churn")).unwrap_or_else(|e| panic!("{e}"));
    for payload in ["alloc", "work", ""] {
        let mut fuel = 0u64;
        let t = Instant::now(); // determinism-ok: benchmark wall time, outside any simulation
        for _ in 0..rounds {
            block_on(h.step("churn", &envelope(payload))).unwrap_or_else(|e| panic!("{e}"));
            fuel += cell.last_entry_fuel();
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "| churn {payload:?} | {} | {:.1} | {:.0} |",
            fuel / u64::from(rounds),
            secs * 1e6 / f64::from(rounds),
            fuel as f64 / secs
        );
    }
}

fn main() {
    let rounds: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("go-cells");
    entry_fuel::<WasmiEngine>("wasmi", &dir);
    startup::<WasmiEngine>("wasmi", &dir, rounds);
    speed::<WasmiEngine>("wasmi", &dir, rounds * 10);
    #[cfg(feature = "wasmtime")]
    {
        use cellhost::engine::wasmtime::WasmtimeEngine;
        entry_fuel::<WasmtimeEngine>("wasmtime", &dir);
        startup::<WasmtimeEngine>("wasmtime", &dir, rounds.div_ceil(4));
        speed::<WasmtimeEngine>("wasmtime", &dir, rounds * 10);
    }
}
