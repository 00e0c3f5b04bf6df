//! `sim bench --cells`: the cell host outside the simulation (no scheduler between fuel slices),
//! so the figures are the host's and the engine's own cost: idle steps per second per cell as
//! the number of cells grows, sibling calls per second, and what small fuel slices (preemption
//! points) cost; on wasmi, and on wasmtime when built with `--features wasmtime`.

use cellhost::abi::StepEnvelope;
use cellhost::engine::Engine;
use cellhost::engine::wasmi::WasmiEngine;
use cellhost::{CellHost, HostConfig, HostServices, Pacing, Registry, cells, manifest};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

struct NoServices;

impl HostServices for NoServices {
    fn now_ns(&self) -> u64 {
        0
    }
    fn entropy(&self, buf: &mut [u8]) {
        buf.fill(0);
    }
    fn log(&self, _: &str, _: &str) {}
    fn kv_get(&self, _: &str, _: &[u8]) -> Option<Vec<u8>> {
        None
    }
    fn kv_put(&self, _: &str, _: &[u8], _: &[u8]) {}
    fn send(&self, _: &str, _: &str, _: &[u8]) -> bool {
        false
    }
    fn recv(&self, _: &str) -> Option<Vec<u8>> {
        None
    }
}

struct FixedSlice(u64);

impl Pacing for FixedSlice {
    fn fuel_slice(&self) -> u64 {
        self.0
    }
    fn preempt(&self) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin(std::future::ready(()))
    }
    fn trace(&self, _: &str, _: fmt::Arguments<'_>) {}
}

fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

fn host<E: Engine + Default>(
    cells_n: usize,
    slice: u64,
) -> Result<CellHost<E, FixedSlice>, String> {
    let host = CellHost::new(
        E::default(),
        Registry::standard(),
        Rc::new(NoServices),
        FixedSlice(slice),
        HostConfig::default(),
    );
    let wasm = cells::wasm("node")?;
    for i in 0..cells_n {
        let deps = if i == 0 { "depends_on = [\"c1\"]" } else { "" };
        let spec = manifest::parse(&format!("name = \"c{i}\"\nversion = \"1\"\n{deps}"))
            .map_err(|e| e.to_string())?;
        host.load(spec, &wasm).map_err(|e| e.to_string())?;
        block_on(host.init(&format!("c{i}"))).map_err(|e| e.to_string())?;
    }
    Ok(host)
}

fn envelope(path: &str) -> StepEnvelope {
    StepEnvelope {
        call_number: 0,
        wall_time_ns: 0,
        payload: path.as_bytes().to_vec(),
    }
}

/// Entries per second over `total` entries spread round-robin over `cells_n` cells.
fn rate<E: Engine>(
    host: &CellHost<E, FixedSlice>,
    cells_n: usize,
    total: u64,
    path: &str,
) -> Result<f64, String> {
    let env = envelope(path);
    let names: Vec<String> = (0..cells_n).map(|i| format!("c{i}")).collect();
    let start = Instant::now(); // determinism-ok: benchmark wall time, outside any simulation
    for k in 0..total {
        let name = &names[k as usize % cells_n];
        block_on(host.step(name, &env)).map_err(|e| e.to_string())?;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

pub fn run(total: u64) -> Result<(), String> {
    println!("## Cell host ({total} entries per row, one core, no scheduler)\n");
    println!("| engine | what | cells | fuel slice | entries/s | µs per entry |");
    println!("|---|---|---:|---:|---:|---:|");
    rows::<WasmiEngine>("wasmi", total)?;
    #[cfg(feature = "wasmtime")]
    rows::<cellhost::engine::wasmtime::WasmtimeEngine>("wasmtime", total)?;
    println!();
    Ok(())
}

fn rows<E: Engine + Default>(engine: &str, total: u64) -> Result<(), String> {
    let row = |what: &str, cells_n: usize, slice: u64, per_s: f64| {
        println!(
            "| {engine} | {what} | {cells_n} | {slice} | {per_s:.0} | {:.2} |",
            1e6 / per_s
        );
    };
    for cells_n in [1usize, 4, 16, 64] {
        let h = host::<E>(cells_n.max(2), 1_000_000)?;
        row(
            "idle step",
            cells_n,
            1_000_000,
            rate(&h, cells_n, total, "")?,
        );
    }
    let h = host::<E>(2, 1_000_000)?;
    row(
        "step with a sibling call c0 -> c1",
        2,
        1_000_000,
        rate(&h, 1, total, "c1")?,
    );
    let h = host::<E>(2, 1_000_000)?;
    let start = Instant::now(); // determinism-ok: benchmark wall time, outside any simulation
    for _ in 0..total {
        block_on(h.call("c1", "get", b"")).map_err(|e| e.to_string())?;
    }
    row(
        "host-initiated call into c1",
        2,
        1_000_000,
        total as f64 / start.elapsed().as_secs_f64(),
    );
    for slice in [100u64, 10] {
        let h = host::<E>(2, slice)?;
        row("idle step, preempted", 1, slice, rate(&h, 1, total, "")?);
    }
    Ok(())
}
