//! The same test cells give the same observable results on wasmi and wasmtime: one workload
//! (lifecycle, sibling calls, cycles, gated capabilities, and every hostile cell) runs on both
//! engines, and every outcome (a value, or the kind of error) must match. Fuel units differ
//! between engines, so slices cut at other instructions; results must not.
#![cfg(feature = "wasmtime")]

use cellhost::abi::StepEnvelope;
use cellhost::engine::Engine;
use cellhost::engine::wasmi::WasmiEngine;
use cellhost::engine::wasmtime::WasmtimeEngine;
use cellhost::{
    CellError, CellHost, Failure, HostConfig, HostServices, Pacing, Registry, cells, manifest,
};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

#[derive(Default)]
struct Services {
    kv: RefCell<BTreeMap<Vec<u8>, Vec<u8>>>,
    mail: RefCell<BTreeMap<String, Vec<Vec<u8>>>>,
    logs: RefCell<Vec<String>>,
}

impl HostServices for Services {
    fn now_ns(&self) -> u64 {
        1
    }
    fn entropy(&self, buf: &mut [u8]) {
        buf.fill(3);
    }
    fn sleep(&self, _: u64) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin(std::future::ready(()))
    }
    fn log(&self, cell: &str, message: &str) {
        self.logs.borrow_mut().push(format!("{cell}: {message}"));
    }
    fn kv_get(&self, _: &str, key: &[u8]) -> Option<Vec<u8>> {
        self.kv.borrow().get(key).cloned()
    }
    fn kv_put(&self, _: &str, key: &[u8], value: &[u8]) {
        self.kv.borrow_mut().insert(key.to_vec(), value.to_vec());
    }
    fn send(&self, _: &str, to: &str, message: &[u8]) -> bool {
        self.mail
            .borrow_mut()
            .entry(to.into())
            .or_default()
            .push(message.to_vec());
        true
    }
    fn recv(&self, cell: &str) -> Option<Vec<u8>> {
        let mut mail = self.mail.borrow_mut();
        let q = mail.get_mut(cell)?;
        (!q.is_empty()).then(|| q.remove(0))
    }
}

/// Yields once between slices of 700 fuel units.
struct Slices;

impl Pacing for Slices {
    fn fuel_slice(&self) -> u64 {
        700
    }
    fn preempt(&self) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin(std::future::ready(()))
    }
    fn trace(&self, _: &str, _: fmt::Arguments<'_>) {}
}

/// An outcome with errors reduced to their kind (messages differ between engines).
fn kind<T: fmt::Debug>(r: Result<T, CellError>) -> String {
    match r {
        Ok(v) => format!("ok {v:?}"),
        Err(CellError::Trap(_)) => "trap".into(),
        Err(CellError::FuelExhausted { export, .. }) => format!("fuel {export}"),
        Err(CellError::BadPointer(_)) => "bad pointer".into(),
        Err(CellError::Failed(f)) => format!("failed earlier ({})", failure_kind(&f)),
        Err(CellError::AllocFailed { .. }) => "alloc failed".into(),
        Err(e) => format!("{e}"),
    }
}

fn failure_kind(f: &Failure) -> &'static str {
    match f {
        Failure::Trap { .. } => "trap",
        Failure::Fuel { .. } => "fuel",
        Failure::Timeout { .. } => "timeout",
        Failure::Exit { .. } => "exit",
        Failure::InitFailed { .. } => "init",
    }
}

fn workload<E: Engine + Default>() -> Vec<String> {
    let services = Rc::new(Services::default());
    let config = HostConfig {
        fuel_per_entry: 3_000_000,
        max_memory: 1 << 20,
        ..HostConfig::default()
    };
    let h = CellHost::new(
        E::default(),
        Registry::standard(),
        services.clone(),
        Slices,
        config,
    );
    let mut out = Vec::new();
    let cells_list = [
        (
            "a",
            "node",
            "depends_on = [\"b\", \"trap\", \"spin\", \"badptr\"]\ncapabilities = [\"channel\"]",
        ),
        (
            "b",
            "node",
            "depends_on = [\"a\"]\ncapabilities = [\"storage.kv\", \"channel\"]\n[config]\nmarker = 7",
        ),
        ("c", "node", "consumes = [\"a\"]"),
        ("trap", "trap", ""),
        ("spin", "spin", ""),
        ("hog", "hog", ""),
        ("badptr", "badptr", ""),
    ];
    for (name, module, extra) in cells_list {
        let spec = manifest::parse(&format!("name = \"{name}\"\nversion = \"1\"\n{extra}"))
            .expect("manifest");
        let wasm = cells::wasm(module).expect("cell");
        out.push(format!(
            "load {name}: {}",
            kind(h.load(spec, &wasm).map(|_| ()))
        ));
        out.push(format!("init {name}: {}", kind(block_on(h.init(name)))));
    }
    let step = |cell: &str, payload: &str| {
        let env = StepEnvelope {
            call_number: 0,
            wall_time_ns: 0,
            payload: payload.as_bytes().to_vec(),
        };
        format!(
            "step {cell} '{payload}': {}",
            kind(block_on(h.step(cell, &env)))
        )
    };
    for (cell, payload) in [
        ("a", ""),
        ("a", ""),
        ("a", "b"),
        ("c", "a/b"),
        ("a", "b/a"),
        ("b", "!kv"),
        ("a", "!kv"),
        ("a", "@b"),
        ("b", "?"),
        ("b", "?"),
        ("trap", ""),
        ("trap", ""),
        ("a", "trap"),
        ("trap", ""),
        ("spin", ""),
        ("spin", ""),
        ("a", "spin"),
        ("hog", ""),
        ("hog", ""),
        ("hog", ""),
        ("hog", ""),
        ("hog", ""),
        ("a", "badptr"),
        ("badptr", ""),
        ("badptr", ""),
        ("a", "zz"),
        ("a", ""),
    ] {
        out.push(step(cell, payload));
    }
    out.push(format!(
        "call b: {}",
        kind(block_on(h.call("b", "get", b"")))
    ));
    out.push(format!("shutdown a: {}", kind(block_on(h.shutdown("a")))));
    out.push(step("a", ""));
    out.push(step("c", "a"));
    out.push(format!("close a: {}", kind(block_on(h.close("a")))));
    out.push(format!("close a: {}", kind(block_on(h.close("a")))));
    out.push(step("a", ""));
    out.extend(services.logs.borrow().iter().map(|l| format!("log {l:?}")));
    out
}

#[test]
fn wasmi_and_wasmtime_agree_on_every_outcome() {
    let on_wasmi = workload::<WasmiEngine>();
    let on_wasmtime = workload::<WasmtimeEngine>();
    for (i, (a, b)) in on_wasmi.iter().zip(&on_wasmtime).enumerate() {
        assert_eq!(a, b, "outcome {i} differs");
    }
    assert_eq!(on_wasmi.len(), on_wasmtime.len());
    // 7 loads and inits, 34 entries, 2 closes, and the config one cell logged at init.
    assert_eq!(on_wasmi.len(), 49, "{on_wasmi:#?}");
    // The workload really exercised the engines (not everything failed the same way).
    let text = on_wasmi.join("\n");
    for want in [
        "step a 'b': ok 1",
        "step a 'b/a': ok -12",
        "step b '!kv': ok 0",
        "step a '!kv': ok 99",
        "step b '?': ok 2",
        "step trap '': ok 1",
        "step trap '': trap",
        "step a 'trap': ok -5",
        "step trap '': failed earlier (trap)",
        "step spin '': fuel pulp_step",
        "step spin '': failed earlier (fuel)",
        "step badptr '': bad pointer",
        "step a 'badptr': ok -4",
    ] {
        assert!(text.contains(want), "missing `{want}` in:\n{text}");
    }
}
