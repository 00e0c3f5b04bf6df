//! A host for the Go cells outside any simulation: a virtual clock that moves only when a cell
//! sleeps, fixed entropy, in-memory stores, and every log line kept.

#![allow(dead_code)]

use cellhost::abi::StepEnvelope;
use cellhost::engine::Engine;
use cellhost::{CellError, CellHost, HostConfig, HostServices, Pacing, Registry};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// Polls a future to its end (the host's futures wake nobody: a yield returns `Pending`
/// once).
pub fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..50_000_000 {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
    panic!("the future never finished (blocked on a lock?)");
}

/// Values by (writing cell, key).
type KvStore = BTreeMap<(String, Vec<u8>), Vec<u8>>;

#[derive(Default)]
pub struct Services {
    pub clock: Cell<u64>,
    pub logs: RefCell<Vec<(String, String)>>,
    kv: RefCell<KvStore>,
    mail: RefCell<BTreeMap<String, VecDeque<Vec<u8>>>>,
    entropy_byte: Cell<u8>,
}

impl Services {
    /// Every log line of one cell.
    pub fn lines(&self, cell: &str) -> Vec<String> {
        self.logs
            .borrow()
            .iter()
            .filter(|(c, _)| c == cell)
            .map(|(_, l)| l.clone())
            .collect()
    }
}

impl HostServices for Services {
    fn now_ns(&self) -> u64 {
        self.clock.get()
    }
    fn entropy(&self, buf: &mut [u8]) {
        for b in buf {
            let next = self.entropy_byte.get().wrapping_add(1);
            self.entropy_byte.set(next);
            *b = next;
        }
    }
    fn log(&self, cell: &str, message: &str) {
        self.logs.borrow_mut().push((cell.into(), message.into()));
    }
    fn output(&self, cell: &str, fd: u32, line: &str) {
        let stream = if fd == 2 { "stderr" } else { "stdout" };
        self.log(cell, &format!("{stream}: {line}"));
    }
    fn sleep(&self, ns: u64) -> Pin<Box<dyn Future<Output = ()>>> {
        self.clock.set(self.clock.get().saturating_add(ns));
        Box::pin(std::future::ready(()))
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
            .push_back(message.to_vec());
        true
    }
    fn recv(&self, cell: &str) -> Option<Vec<u8>> {
        self.mail.borrow_mut().get_mut(cell)?.pop_front()
    }
}

/// Slices of a fixed size; a yield (one `Pending`) between them.
pub struct Slices(pub u64);

impl Pacing for Slices {
    fn fuel_slice(&self) -> u64 {
        self.0
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

pub type Host<E> = CellHost<E, Slices>;

pub fn host<E: Engine>(engine: E, config: HostConfig) -> (Host<E>, Rc<Services>) {
    let services = Rc::new(Services::default());
    let host = CellHost::new(
        engine,
        Registry::standard(),
        services.clone(),
        Slices(1_000_000),
        config,
    );
    (host, services)
}

/// The Go cells' directory.
pub fn go_cells() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("go-cells")
}

pub fn envelope(call_number: u64, payload: &str) -> StepEnvelope {
    StepEnvelope {
        call_number,
        wall_time_ns: 0,
        payload: payload.as_bytes().to_vec(),
    }
}

pub fn step<E: Engine>(h: &Host<E>, cell: &str, n: u64, payload: &str) -> Result<i32, CellError> {
    block_on(h.step(cell, &envelope(n, payload)))
}

/// Loads one Go cell by its directory name.
pub fn load_go<E: Engine>(h: &Host<E>, name: &str) -> Result<(), CellError> {
    h.load_dir(&go_cells().join(name)).map(|_| ())
}
