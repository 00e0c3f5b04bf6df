//! Cells built as Pulp's users build them (Go, `GOOS=wasip1 GOARCH=wasm go build
//! -buildmode=c-shared`, checked in under `go-cells/`) load and run: WASI bound, `_initialize`
//! run once, Pulp's `[config]` bytes, failures that end the cell, restarts, and the same
//! results from a start image as from running `_initialize`.

mod common;

use cellhost::engine::wasmi::WasmiEngine;
use cellhost::engine::{Engine, LoadError};
use cellhost::{CellError, Failure, HostConfig, Lifecycle, cell_dirs};
use common::{Host, block_on, go_cells, host, load_go, step};

const CELLS: [&str; 6] = ["caller", "caps", "churn", "counter", "exiter", "panicker"];

#[test]
fn every_go_cell_directory_is_found() {
    let dirs = cell_dirs(&go_cells()).expect("go-cells readable");
    let names: Vec<String> = dirs
        .iter()
        .filter_map(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    assert_eq!(names, CELLS);
}

/// Init, steps, a sibling call, capabilities, shutdown and close on every Go cell.
pub fn lifecycle<E: Engine>(engine: E) {
    let (h, services) = host(engine, HostConfig::default());
    for name in CELLS {
        load_go(&h, name).unwrap_or_else(|e| panic!("{name} loads: {e}"));
        block_on(h.init(name)).unwrap_or_else(|e| panic!("{name} inits: {e}"));
    }
    // The config marker arrived as an int64 (the cell refuses any other type).
    assert_eq!(
        services.lines("counter"),
        vec!["stdout: counter: ready, marker 424242"]
    );
    assert_eq!(step(&h, "counter", 0, ""), Ok(1));
    assert_eq!(step(&h, "counter", 1, ""), Ok(2));
    // A sibling call from Go to Go, answered through the caller's own pulp_alloc.
    assert_eq!(step(&h, "caller", 0, "counter"), Ok(3));
    assert_eq!(step(&h, "caller", 1, "nobody"), Ok(-3), "unknown target");
    assert_eq!(
        step(&h, "caller", 2, "caps"),
        Ok(-11),
        "not in caller's manifest"
    );
    assert_eq!(
        block_on(h.call("counter", "get", b"")),
        Ok(4u64.to_le_bytes().to_vec())
    );
    // Capabilities through //go:wasmimport, WASI output, clocks and entropy.
    assert_eq!(step(&h, "caps", 7, "put"), Ok(0));
    assert_eq!(step(&h, "caps", 8, "get"), Ok(8));
    assert_eq!(step(&h, "caps", 9, "send:caps"), Ok(0));
    assert_eq!(step(&h, "caps", 10, "recv"), Ok(4));
    assert_eq!(step(&h, "caps", 11, "recv"), Ok(-1), "nothing queued");
    assert_eq!(step(&h, "caps", 12, "log"), Ok(0));
    assert_eq!(step(&h, "caps", 13, "clock"), Ok(0));
    assert_eq!(step(&h, "caps", 14, "rand"), Ok(8));
    let caps = services.lines("caps");
    assert_eq!(caps[0], "stdout: caps: kv greeting = \"hello #7\"");
    assert_eq!(caps[1], "stdout: caps: received \"ping\"");
    assert_eq!(caps[2], "caps: a line through pulp_log");
    assert!(caps[3].starts_with("stdout: caps: host clock "), "{caps:?}");
    assert!(caps[4].starts_with("stdout: caps: random "), "{caps:?}");
    // Goroutines, a timer (a virtual sleep through poll_oneoff) and the collector.
    let before = services.clock.get();
    let sum = step(&h, "churn", 0, "work").expect("work step");
    assert_eq!(
        step(&h, "churn", 1, "work"),
        Ok(sum),
        "the same work, the same sum"
    );
    assert!(
        services.clock.get() >= before + 2_000_000,
        "the goroutine slept"
    );
    assert_eq!(step(&h, "churn", 2, "sleep"), Ok(1));
    assert_eq!(step(&h, "churn", 3, ""), Ok(1));
    assert_eq!(step(&h, "panicker", 0, ""), Ok(1));
    assert_eq!(step(&h, "exiter", 0, ""), Ok(1));
    for name in CELLS {
        block_on(h.shutdown(name)).unwrap_or_else(|e| panic!("{name} shuts down: {e}"));
        block_on(h.close(name)).unwrap_or_else(|e| panic!("{name} closes: {e}"));
        assert_eq!(h.cell(name).map(|c| c.lifecycle()), Some(Lifecycle::Closed));
    }
    assert_eq!(
        services.lines("counter").last().map(String::as_str),
        Some("stdout: counter: shutting down after 4")
    );
}

#[test]
fn go_cells_run_their_lifecycle_on_wasmi() {
    lifecycle(WasmiEngine::default());
}

#[cfg(feature = "wasmtime")]
#[test]
fn go_cells_run_their_lifecycle_on_wasmtime() {
    lifecycle(cellhost::engine::wasmtime::WasmtimeEngine::default());
}

#[test]
fn proc_exit_ends_the_cell_failed_with_its_code() {
    let (h, _) = host(WasmiEngine::default(), HostConfig::default());
    load_go(&h, "exiter").expect("loads");
    block_on(h.init("exiter")).expect("inits");
    assert_eq!(
        step(&h, "exiter", 0, "exit"),
        Err(CellError::Exited { code: 3 })
    );
    let cell = h.cell("exiter").expect("loaded");
    assert_eq!(cell.lifecycle(), Lifecycle::Failed);
    assert_eq!(cell.failure().and_then(|f| f.exit_code()), Some(3));
    // restart = "never": every later entry is refused with the failure.
    assert!(matches!(
        step(&h, "exiter", 1, ""),
        Err(CellError::Failed(Failure::Exit { code: 3, .. }))
    ));
    block_on(h.close("exiter")).expect("a failed cell closes");
}

/// A Go panic in an export prints the panic to stderr and traps (`unreachable`).
fn panics(r: Result<i32, CellError>) -> bool {
    matches!(r, Err(CellError::Trap(t)) if t.message.contains("unreachable"))
}

#[test]
fn a_panic_fails_the_cell_and_on_crash_restarts_it() {
    let (h, services) = host(WasmiEngine::default(), HostConfig::default());
    load_go(&h, "panicker").expect("loads");
    block_on(h.init("panicker")).expect("inits");
    assert!(panics(step(&h, "panicker", 0, "boom")));
    let lines = services.lines("panicker");
    assert!(
        lines.contains(&"stderr: panic: boom".to_string()),
        "{lines:?}"
    );
    // restart = "on_crash": a new instance, pulp_init again, and the cell serves at once.
    let cell = h.cell("panicker").expect("loaded");
    assert_eq!(cell.lifecycle(), Lifecycle::Ready);
    assert_eq!(cell.restarts(), 1);
    assert!(matches!(cell.failure(), Some(Failure::Trap { .. })));
    assert_eq!(
        step(&h, "panicker", 1, ""),
        Ok(1),
        "a fresh instance, initialised once"
    );
    let inits = services
        .lines("panicker")
        .iter()
        .filter(|l| l.as_str() == "stdout: panicker: init #1")
        .count();
    assert_eq!(inits, 2);
    // Pulp's breaker: five restarts in 30 s, then the cell stays down.
    for n in 0..5 {
        assert!(panics(step(&h, "panicker", 2 + n, "boom")));
    }
    assert_eq!(cell.lifecycle(), Lifecycle::Failed);
    assert_eq!(cell.restarts(), 5);
    assert!(matches!(
        step(&h, "panicker", 9, ""),
        Err(CellError::Failed(_))
    ));
}

#[test]
fn a_cell_spinning_without_yielding_fails_by_fuel() {
    let config = HostConfig {
        fuel_per_entry: 20_000_000,
        ..HostConfig::default()
    };
    let (h, _) = host(WasmiEngine::default(), config);
    load_go(&h, "churn").expect("loads");
    block_on(h.init("churn")).expect("inits");
    let err = step(&h, "churn", 0, "spin").expect_err("spins");
    assert_eq!(
        err,
        CellError::FuelExhausted {
            export: "pulp_step",
            fuel: 20_000_000
        }
    );
    assert_eq!(
        err.to_string(),
        "`pulp_step` ran past its budget of 20000000 fuel"
    );
    assert!(matches!(
        step(&h, "churn", 1, ""),
        Err(CellError::Failed(Failure::Fuel { .. }))
    ));
}

#[test]
fn call_timeout_counts_virtual_time() {
    let (h, services) = host(WasmiEngine::default(), HostConfig::default());
    let (mut spec, wasm) = cellhost::read_cell_dir(&go_cells().join("churn")).expect("reads");
    spec.call_timeout_ms = Some(5);
    h.load(spec, &wasm).expect("loads");
    block_on(h.init("churn")).expect("inits");
    let before = services.clock.get();
    assert_eq!(
        step(&h, "churn", 0, "sleep"),
        Err(CellError::Timeout {
            export: "pulp_step",
            ms: 5
        })
    );
    assert!(services.clock.get() - before > 5_000_000);
}

#[test]
fn a_module_importing_an_unknown_wasi_function_does_not_load() {
    let (h, _) = host(WasmiEngine::default(), HostConfig::default());
    let wat = r#"(module
        (import "wasi_snapshot_preview1" "fd_frobnicate" (func (param i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "pulp_alloc") (param i32) (result i32) (i32.const 0))
        (func (export "pulp_init") (param i32 i32) (result i32) (i32.const 0))
        (func (export "pulp_step") (param i32 i32) (result i32) (i32.const 0))
        (func (export "pulp_shutdown") (result i32) (i32.const 0)))"#;
    let wasm = wat::parse_str(wat).expect("test module");
    let err = h
        .load(cellhost::manifest::CellSpec::new("odd", "1"), &wasm)
        .map(|_| ())
        .expect_err("refused");
    assert_eq!(
        err,
        CellError::Load(LoadError::UnknownImport {
            module: "wasi_snapshot_preview1".into(),
            name: "fd_frobnicate".into()
        })
    );
    assert_eq!(
        err.to_string(),
        "module imports unknown `wasi_snapshot_preview1.fd_frobnicate`"
    );
}

#[test]
fn a_manifest_with_a_key_pulp_refuses_is_refused_by_name() {
    let dir = std::env::temp_dir().join(format!("cellhost-badkey-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(
        dir.join("pulp.cell.toml"),
        "name = \"x\"\nversion = \"1\"\nmax_fuel = 5\n",
    )
    .expect("manifest written");
    let (h, _) = host(WasmiEngine::default(), HostConfig::default());
    let err = h.load_dir(&dir).map(|_| ()).expect_err("refused");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(err.to_string(), "manifest has unknown key `max_fuel`");
}

#[test]
fn a_wrong_wasm_sha256_is_refused() {
    let (h, _) = host(WasmiEngine::default(), HostConfig::default());
    let (mut spec, wasm) = cellhost::read_cell_dir(&go_cells().join("exiter")).expect("reads");
    spec.wasm_sha256 = Some("0".repeat(64));
    let err = h.load(spec, &wasm).map(|_| ()).expect_err("refused");
    assert!(
        err.to_string()
            .starts_with("manifest key `wasm_sha256` is invalid"),
        "{err}"
    );
}

/// What a workload saw: every entry's outcome and fuel, then every log line.
fn workload(h: &Host<WasmiEngine>, services: &common::Services) -> Vec<String> {
    let mut out = Vec::new();
    for name in CELLS {
        load_go(h, name).expect("loads");
        let cell = h.cell(name).expect("loaded");
        out.push(format!("{name} start fuel {}", cell.start_fuel()));
        let r = block_on(h.init(name));
        out.push(format!("{name} init {r:?} fuel {}", cell.last_entry_fuel()));
    }
    let steps = [
        ("counter", ""),
        ("caller", "counter"),
        ("caps", "put"),
        ("caps", "get"),
        ("caps", "rand"),
        ("caps", "clock"),
        ("churn", "work"),
        ("churn", "sleep"),
        ("churn", "work"),
        ("panicker", "boom"),
        ("panicker", ""),
        ("exiter", "exit"),
        ("counter", ""),
    ];
    for (n, (name, payload)) in steps.iter().enumerate() {
        let r = step(h, name, n as u64, payload);
        let fuel = h.cell(name).map_or(0, |c| c.last_entry_fuel());
        out.push(format!("{name} step {payload:?} {r:?} fuel {fuel}"));
    }
    out.extend(services.logs.borrow().iter().map(|l| format!("log {l:?}")));
    out
}

#[test]
fn starting_from_the_image_is_the_same_as_running_initialize() {
    let with_image = |snapshots: bool| {
        let config = HostConfig {
            snapshots,
            ..HostConfig::default()
        };
        let (h, services) = host(WasmiEngine::default(), config);
        workload(&h, &services)
    };
    // The first host with images makes them; the second starts every cell from one.
    let first = with_image(true);
    let imaged = with_image(true);
    let fresh = with_image(false);
    assert_eq!(imaged, fresh);
    assert_eq!(first, fresh);
    assert!(fresh.len() > 30, "{fresh:#?}");
}
