//! The cell host on wasmi with the WAT test cells, driven by a one-task executor: lifecycle,
//! sibling calls and their authorization, cycle detection, gated stubs, and typed errors for
//! every kind of bad input.

use cellhost::abi::{StepEnvelope, call_code};
use cellhost::engine::LoadError;
use cellhost::engine::wasmi::WasmiEngine;
use cellhost::{
    CellError, CellHost, Failure, HostConfig, HostServices, Lifecycle, Pacing, Registry,
};
use cellhost::{cells, manifest};
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
    for _ in 0..10_000_000 {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
    panic!("the future never finished (blocked on a lock?)");
}

/// Values by (writing cell, key).
type KvStore = BTreeMap<(String, Vec<u8>), Vec<u8>>;

#[derive(Default)]
struct Services {
    kv: RefCell<KvStore>,
    logs: RefCell<Vec<(String, String)>>,
    mail: RefCell<BTreeMap<String, Vec<Vec<u8>>>>,
}

impl HostServices for Services {
    fn now_ns(&self) -> u64 {
        42
    }
    fn entropy(&self, buf: &mut [u8]) {
        buf.fill(7);
    }
    fn sleep(&self, _: u64) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin(std::future::ready(()))
    }
    fn log(&self, cell: &str, message: &str) {
        self.logs.borrow_mut().push((cell.into(), message.into()));
    }
    fn kv_get(&self, cell: &str, key: &[u8]) -> Option<Vec<u8>> {
        self.kv.borrow().get(&(cell.into(), key.to_vec())).cloned()
    }
    fn kv_put(&self, cell: &str, key: &[u8], value: &[u8]) {
        self.kv
            .borrow_mut()
            .insert((cell.into(), key.to_vec()), value.to_vec());
    }
    fn send(&self, _: &str, to: &str, message: &[u8]) -> bool {
        self.mail
            .borrow_mut()
            .entry(to.to_string())
            .or_default()
            .push(message.to_vec());
        true
    }
    fn recv(&self, cell: &str) -> Option<Vec<u8>> {
        let mut mail = self.mail.borrow_mut();
        let queue = mail.get_mut(cell)?;
        (!queue.is_empty()).then(|| queue.remove(0))
    }
}

/// Yields once between fuel slices.
struct Yielding;

impl Pacing for Yielding {
    fn fuel_slice(&self) -> u64 {
        500
    }
    fn preempt(&self) -> Pin<Box<dyn Future<Output = ()>>> {
        let mut yielded = false;
        Box::pin(std::future::poll_fn(move |_| {
            if yielded {
                Poll::Ready(())
            } else {
                yielded = true;
                Poll::Pending
            }
        }))
    }
    fn trace(&self, _: &str, _: fmt::Arguments<'_>) {}
}

type Host = CellHost<WasmiEngine, Yielding>;

fn host_with(config: HostConfig) -> (Host, Rc<Services>) {
    let services = Rc::new(Services::default());
    let host = CellHost::new(
        WasmiEngine::default(),
        Registry::standard(),
        services.clone(),
        Yielding,
        config,
    );
    (host, services)
}

fn host() -> (Host, Rc<Services>) {
    host_with(HostConfig::default())
}

fn spec(text: &str) -> manifest::CellSpec {
    manifest::parse(text).expect("test manifest parses")
}

fn load(host: &Host, name: &str, module: &str, extra: &str) -> Result<(), CellError> {
    let text = format!("name = \"{name}\"\nversion = \"1\"\n{extra}");
    let wasm = cells::wasm(module).expect("test cell compiles");
    host.load(spec(&text), &wasm).map(|_| ())
}

fn idle(n: u64) -> StepEnvelope {
    StepEnvelope {
        call_number: n,
        wall_time_ns: 0,
        payload: Vec::new(),
    }
}

fn path(p: &str) -> StepEnvelope {
    StepEnvelope {
        call_number: 0,
        wall_time_ns: 0,
        payload: p.as_bytes().to_vec(),
    }
}

#[test]
fn lifecycle_init_step_shutdown_close() {
    let (h, _) = host();
    load(&h, "a", "node", "").expect("loads");
    assert_eq!(
        block_on(h.step("a", &idle(1))),
        Err(CellError::NotInitialized)
    );
    block_on(h.init("a")).expect("init");
    assert_eq!(block_on(h.step("a", &idle(1))), Ok(1));
    assert_eq!(block_on(h.step("a", &idle(2))), Ok(2));
    block_on(h.shutdown("a")).expect("shutdown");
    assert_eq!(block_on(h.step("a", &idle(3))), Err(CellError::ShutDown));
    block_on(h.close("a")).expect("close");
    block_on(h.close("a")).expect("close is safe twice");
    assert_eq!(block_on(h.step("a", &idle(4))), Err(CellError::Closed));
    assert_eq!(h.cell("a").map(|c| c.lifecycle()), Some(Lifecycle::Closed));
}

#[test]
fn heap_returns_to_its_top_after_each_entry() {
    // Every buffer the host allocates in a cell is freed (in reverse order), so idle ticks and
    // calls leave the test allocator where it was.
    let (h, _) = host();
    load(&h, "a", "node", "depends_on = [\"b\"]").expect("loads");
    load(&h, "b", "node", "").expect("loads");
    block_on(h.init("a")).expect("init");
    block_on(h.init("b")).expect("init");
    for i in 0..50 {
        block_on(h.step("a", &idle(i))).expect("idle step");
        assert_eq!(block_on(h.step("a", &path("b"))), Ok(i as i32 + 1));
    }
    let out = block_on(h.call("b", "get", b"")).expect("host call");
    assert_eq!(out, 51i64.to_le_bytes());
}

#[test]
fn sibling_calls_are_authorized_by_manifests() {
    let (h, _) = host();
    load(&h, "a", "node", "depends_on = [\"b\"]").expect("loads");
    load(&h, "b", "node", "provides = [\"counting\"]").expect("loads");
    load(&h, "c", "node", "consumes = [\"counting\"]").expect("loads");
    for n in ["a", "b", "c"] {
        block_on(h.init(n)).expect("init");
    }
    assert_eq!(block_on(h.step("a", &path("b"))), Ok(1));
    assert_eq!(
        block_on(h.step("c", &path("b"))),
        Ok(2),
        "consumes what b provides"
    );
    let denied = -(call_code::NOT_AUTHORIZED as i32);
    assert_eq!(block_on(h.step("b", &path("a"))), Ok(denied));
    assert_eq!(
        block_on(h.step("a", &path("zz"))),
        Ok(-(call_code::UNKNOWN_TARGET as i32))
    );
}

#[test]
fn a_call_cycle_fails_with_a_reentrancy_code_at_once() {
    let (h, _) = host();
    load(&h, "a", "node", "depends_on = [\"b\"]").expect("loads");
    load(&h, "b", "node", "depends_on = [\"a\"]").expect("loads");
    block_on(h.init("a")).expect("init");
    block_on(h.init("b")).expect("init");
    // a -> b -> a: b's nested call into a answers -12, which b passes back as its value.
    assert_eq!(
        block_on(h.step("a", &path("b/a"))),
        Ok(-(call_code::REENTRANT as i32))
    );
    // Nothing stays locked: both keep working.
    assert_eq!(block_on(h.step("b", &path("a"))), Ok(1));
}

#[test]
fn undeclared_gated_capabilities_are_stubs() {
    let (h, services) = host();
    load(&h, "plain", "node", "").expect("loads");
    load(&h, "store", "node", "capabilities = [\"storage.kv\"]").expect("loads");
    block_on(h.init("plain")).expect("init");
    block_on(h.init("store")).expect("init");
    assert_eq!(
        block_on(h.step("plain", &path("!kv"))),
        Ok(call_code::STUBBED as i32)
    );
    assert_eq!(block_on(h.step("store", &path("!kv"))), Ok(0));
    let writers: Vec<String> = services.kv.borrow().keys().map(|k| k.0.clone()).collect();
    assert_eq!(writers, vec!["store".to_string()]);
    assert_eq!(
        load(&h, "x", "node", "capabilities = [\"spawn.docker\"]"),
        Err(CellError::Bind(
            cellhost::capability::BindError::UnknownCapability {
                name: "spawn.docker".into()
            }
        ))
    );
}

fn load_wat(h: &Host, name: &str, wat: &str) -> Result<(), CellError> {
    let wasm = wat::parse_str(wat).expect("test module parses");
    h.load(spec(&format!("name = \"{name}\"\nversion = \"1\"")), &wasm)
        .map(|_| ())
}

#[test]
fn bad_modules_give_typed_errors() {
    let (h, _) = host();
    assert!(matches!(
        h.load(
            spec("name = \"x\"\nversion = \"1\""),
            b"\0asm\x01\0\0\0garbage"
        ),
        Err(CellError::Load(LoadError::InvalidWasm { .. }))
    ));
    assert_eq!(
        load_wat(&h, "nomem", "(module)"),
        Err(CellError::Load(LoadError::MissingExport { name: "memory" }))
    );
    let missing_step = r#"(module (memory (export "memory") 1)
        (func (export "pulp_alloc") (param i32) (result i32) (i32.const 0))
        (func (export "pulp_init") (param i32 i32) (result i32) (i32.const 0))
        (func (export "pulp_shutdown") (result i32) (i32.const 0)))"#;
    assert_eq!(
        load_wat(&h, "nostep", missing_step),
        Err(CellError::Load(LoadError::MissingExport {
            name: "pulp_step"
        }))
    );
    let wrong_sig = r#"(module (memory (export "memory") 1)
        (func (export "pulp_alloc") (param i32) (result i32) (i32.const 0))
        (func (export "pulp_init") (param i32 i32) (result i32) (i32.const 0))
        (func (export "pulp_step") (param i64) (result i32) (i32.const 0))
        (func (export "pulp_shutdown") (result i32) (i32.const 0)))"#;
    match load_wat(&h, "sig", wrong_sig) {
        Err(CellError::Load(LoadError::WrongSignature { name, .. })) => {
            assert_eq!(name, "pulp_step")
        }
        other => panic!("{other:?}"),
    }
    let foreign = r#"(module (import "wasi" "fd_write" (func (param i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "pulp_alloc") (param i32) (result i32) (i32.const 0))
        (func (export "pulp_init") (param i32 i32) (result i32) (i32.const 0))
        (func (export "pulp_step") (param i32 i32) (result i32) (i32.const 0))
        (func (export "pulp_shutdown") (result i32) (i32.const 0)))"#;
    assert_eq!(
        load_wat(&h, "foreign", foreign),
        Err(CellError::Load(LoadError::UnknownImport {
            module: "wasi".into(),
            name: "fd_write".into()
        }))
    );
    let bad_import_sig = r#"(module (import "pulp" "pulp_log" (func (param i64) (result i32)))
        (memory (export "memory") 1)
        (func (export "pulp_alloc") (param i32) (result i32) (i32.const 0))
        (func (export "pulp_init") (param i32 i32) (result i32) (i32.const 0))
        (func (export "pulp_step") (param i32 i32) (result i32) (i32.const 0))
        (func (export "pulp_shutdown") (result i32) (i32.const 0)))"#;
    assert!(matches!(
        load_wat(&h, "badimport", bad_import_sig),
        Err(CellError::Load(LoadError::Link { .. }))
    ));
}

#[test]
fn hostile_cells_are_contained() {
    let config = HostConfig {
        // Growing memory costs fuel per byte in wasmi; the budget must cover a 256 KiB grow.
        fuel_per_entry: 5_000_000,
        max_memory: 1 << 20,
        ..HostConfig::default()
    };
    let (h, services) = host_with(config);
    for (name, module) in [("t", "trap"), ("s", "spin"), ("g", "hog"), ("p", "badptr")] {
        load(&h, name, module, "").expect("loads");
        block_on(h.init(name)).expect("init");
    }
    // A trap is a typed error and fails the cell: its state is whatever the trap left, so
    // no later entry reaches it.
    assert_eq!(block_on(h.step("t", &idle(0))), Ok(1));
    assert!(matches!(
        block_on(h.step("t", &idle(1))),
        Err(CellError::Trap(_))
    ));
    assert_eq!(h.cell("t").map(|c| c.lifecycle()), Some(Lifecycle::Failed));
    assert!(matches!(
        block_on(h.step("t", &idle(2))),
        Err(CellError::Failed(Failure::Trap { .. }))
    ));
    // An endless loop is stopped by the fuel budget, and the cell has failed.
    assert!(matches!(
        block_on(h.step("s", &idle(0))),
        Err(CellError::FuelExhausted { .. })
    ));
    assert!(matches!(
        block_on(h.step("s", &idle(1))),
        Err(CellError::Failed(Failure::Fuel { .. }))
    ));
    // Memory growth stops at the limit: the cell's own allocation fails, then the host's.
    let mut outcomes = Vec::new();
    for i in 0..8 {
        outcomes.push(block_on(h.step("g", &idle(i))));
    }
    assert!(outcomes.contains(&Ok(-1)), "{outcomes:?}");
    // Wild pointers: a bad log pointer is a code; a wild buffer is a typed error.
    assert_eq!(
        block_on(h.step("p", &idle(0))),
        Ok(call_code::BAD_POINTER as i32)
    );
    assert!(services.logs.borrow().is_empty());
    assert!(matches!(
        block_on(h.step("p", &idle(1))),
        Err(CellError::BadPointer(_))
    ));
    // Healthy cells are unaffected.
    load(&h, "ok", "node", "").expect("loads");
    block_on(h.init("ok")).expect("init");
    assert_eq!(block_on(h.step("ok", &idle(0))), Ok(1));
}

#[test]
fn the_message_channel_is_gated_and_delivers() {
    let (h, _) = host();
    load(&h, "tx", "node", "capabilities = [\"channel\"]").expect("loads");
    load(&h, "rx", "node", "capabilities = [\"Channel\"]").expect("loads");
    load(&h, "mute", "node", "").expect("loads");
    for n in ["tx", "rx", "mute"] {
        block_on(h.init(n)).expect("init");
    }
    assert_eq!(
        block_on(h.step("rx", &path("?"))),
        Ok(-1),
        "nothing queued yet"
    );
    assert_eq!(block_on(h.step("tx", &path("@rx"))), Ok(0));
    assert_eq!(block_on(h.step("rx", &path("?"))), Ok(2), "received \"hi\"");
    assert_eq!(
        block_on(h.step("mute", &path("@rx"))),
        Ok(call_code::STUBBED as i32)
    );
    assert_eq!(
        block_on(h.step("mute", &path("?"))),
        Ok(-(call_code::STUBBED as i32))
    );
}

#[test]
fn init_receives_the_config_as_messagepack() {
    let (h, services) = host();
    let text = "name = \"a\"\nversion = \"1\"\n[config]\nmarker = 7\nlabel = \"x\"";
    let spec = spec(text);
    let want = cellhost::msgpack::encode_table(&spec.config);
    assert_eq!(want[0], 0x82, "a map of two entries");
    let wasm = cells::wasm("node").expect("test cell compiles");
    h.load(spec, &wasm).expect("loads");
    block_on(h.init("a")).expect("init");
    let logs = services.logs.borrow();
    assert_eq!(
        logs.as_slice(),
        &[("a".to_string(), String::from_utf8_lossy(&want).into_owned())]
    );
}
