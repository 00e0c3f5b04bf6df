//! `sim bench --cells`: the cell host outside the simulation (no scheduler between fuel slices),
//! so the figures are the host's and the engine's own cost: idle steps per second per cell as
//! the number of cells grows, sibling calls per second, and what small fuel slices (preemption
//! points) cost; on wasmi, and on wasmtime when built with `--features wasmtime`.

use cellhost::abi::StepEnvelope;
use cellhost::engine::Engine;
use cellhost::engine::wasmi::WasmiEngine;
use cellhost::standalone::{self, FixedSlice, Quiet};
use cellhost::{CellHost, HostConfig, Registry, cells, manifest};
use std::future::Future;
use std::rc::Rc;
use std::time::Instant;

/// Polls a host future to its end: with quiet services and free preemption nothing stays
/// pending, so a future that never finishes is a broken benchmark.
fn block_on<F: Future>(f: F) -> F::Output {
    standalone::block_on(f, u64::MAX).expect("a bench entry never finished")
}

fn host<E: Engine + Default>(
    cells_n: usize,
    slice: u64,
) -> Result<CellHost<E, FixedSlice>, String> {
    let host = CellHost::new(
        E::default(),
        Registry::standard(),
        Rc::new(Quiet),
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
    crate::outln!("## Cell host ({total} entries per row, one core, no scheduler)\n");
    crate::outln!("| engine | what | cells | fuel slice | entries/s | µs per entry |");
    crate::outln!("|---|---|---:|---:|---:|---:|");
    rows::<WasmiEngine>("wasmi", total)?;
    #[cfg(feature = "wasmtime")]
    rows::<cellhost::engine::wasmtime::WasmtimeEngine>("wasmtime", total)?;
    crate::outln!();
    Ok(())
}

fn rows<E: Engine + Default>(engine: &str, total: u64) -> Result<(), String> {
    let row = |what: &str, cells_n: usize, slice: u64, per_s: f64| {
        crate::outln!(
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
