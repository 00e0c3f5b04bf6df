//! The simulated machine for the cell scenarios: the real cell host on wasmi, with its
//! environment simulated.
//!
//! Model and faults: every cell entry runs in fuel slices whose sizes come from the decision
//! source (1 to `max_slice` units), and each slice boundary is a scheduling point, so any actor
//! may run between two instructions of a cell. Host capabilities are served from the virtual
//! clock (wall time), the decision source (entropy), the trace (logging), and an in-memory
//! key-value store and mailboxes that record who wrote what. The engine binding records every
//! entry into every instance (`models::cells::CellEvent`) for the oracles, outside the host.

use cellhost::engine::wasmi::WasmiEngine;
use cellhost::engine::{
    Answer, Engine, GlobalValue, GuestMemory, Import, Instance, Limits, LoadError, Slice, Trap,
};
use cellhost::{CellHost, HostConfig, HostServices, Pacing, Registry};
use models::cells::CellEvent;
use simkit::Ctx;
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

/// Instance logs, by cell name.
pub type Logs = Rc<RefCell<BTreeMap<String, Vec<CellEvent>>>>;

/// Values by (writing cell, key).
type KvStore = BTreeMap<(String, Vec<u8>), Vec<u8>>;

/// The key-value store and mailboxes cells reach through their capabilities; they record who
/// wrote what (for the capability oracle). Shared by simulated and hardware runs.
#[derive(Default)]
pub struct CellStores {
    kv: RefCell<KvStore>,
    /// Every kv write, by writing cell.
    pub kv_writers: RefCell<Vec<String>>,
    mailboxes: RefCell<BTreeMap<String, VecDeque<Vec<u8>>>>,
}

impl CellStores {
    pub fn open_mailbox(&self, cell: &str) {
        self.mailboxes
            .borrow_mut()
            .entry(cell.to_string())
            .or_default();
    }
    pub fn kv_get(&self, cell: &str, key: &[u8]) -> Option<Vec<u8>> {
        self.kv.borrow().get(&(cell.into(), key.to_vec())).cloned()
    }
    pub fn kv_put(&self, cell: &str, key: &[u8], value: &[u8]) {
        self.kv_writers.borrow_mut().push(cell.to_string());
        self.kv
            .borrow_mut()
            .insert((cell.into(), key.to_vec()), value.to_vec());
    }
    pub fn send(&self, to: &str, message: &[u8]) -> bool {
        match self.mailboxes.borrow_mut().get_mut(to) {
            Some(q) => {
                q.push_back(message.to_vec());
                true
            }
            None => false,
        }
    }
    pub fn recv(&self, cell: &str) -> Option<Vec<u8>> {
        self.mailboxes.borrow_mut().get_mut(cell)?.pop_front()
    }
}

/// Host services from the simulation.
pub struct SimServices {
    ctx: Ctx,
    pub stores: CellStores,
    /// Every line each cell wrote to its standard output or error (the cell's own account of
    /// what it did, for reference models).
    pub output: RefCell<BTreeMap<String, Vec<String>>>,
}

impl SimServices {
    pub fn new(ctx: Ctx) -> Self {
        Self {
            ctx,
            stores: CellStores::default(),
            output: RefCell::default(),
        }
    }
}

impl HostServices for SimServices {
    fn now_ns(&self) -> u64 {
        self.ctx.now()
    }
    fn entropy(&self, buf: &mut [u8]) {
        for b in buf {
            *b = self.ctx.choose(256) as u8;
        }
    }
    fn log(&self, cell: &str, message: &str) {
        self.ctx
            .trace("cell-log", format_args!("{cell}: {message}"));
    }
    fn output(&self, cell: &str, fd: u32, line: &str) {
        let stream = if fd == 2 { "stderr" } else { "stdout" };
        self.output
            .borrow_mut()
            .entry(cell.to_string())
            .or_default()
            .push(format!("{stream}: {line}"));
        self.log(cell, line);
    }
    fn sleep(&self, ns: u64) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin(self.ctx.sleep(ns))
    }
    fn kv_get(&self, cell: &str, key: &[u8]) -> Option<Vec<u8>> {
        self.stores.kv_get(cell, key)
    }
    fn kv_put(&self, cell: &str, key: &[u8], value: &[u8]) {
        self.ctx
            .trace("kv-put", format_args!("{cell} key_len={}", key.len()));
        self.stores.kv_put(cell, key, value);
    }
    fn send(&self, _from: &str, to: &str, message: &[u8]) -> bool {
        self.stores.send(to, message)
    }
    fn recv(&self, cell: &str) -> Option<Vec<u8>> {
        self.stores.recv(cell)
    }
}

/// Fuel slices from the decision source; a yield to the scheduler between slices.
pub struct SimPacing {
    pub ctx: Ctx,
    pub max_slice: u64,
    /// Whose the engine binding's next instance is (shared with [`ObservedEngine`]).
    pub naming: Rc<RefCell<String>>,
}

impl Pacing for SimPacing {
    fn fuel_slice(&self) -> u64 {
        1 + self.ctx.choose(self.max_slice)
    }
    fn preempt(&self) -> Pin<Box<dyn Future<Output = ()>>> {
        let ctx = self.ctx.clone();
        Box::pin(async move { ctx.yield_now().await })
    }
    fn trace(&self, event: &str, details: fmt::Arguments<'_>) {
        self.ctx.trace(event, details);
    }
    fn trace_on(&self, lane: &str, event: &str, details: fmt::Arguments<'_>) {
        self.ctx.with(|k| k.trace_as(lane, event, details));
    }
    fn making_instance(&self, cell: &str) {
        cell.clone_into(&mut self.naming.borrow_mut());
    }
}

/// The engine binding, recording each instance's entries. It sits between the host and the
/// engine, so what it records is what the host really did to the cell.
pub struct ObservedEngine<E: Engine> {
    inner: E,
    logs: Logs,
    /// The name the next instance is recorded under (the cell being loaded or restarted).
    naming: Rc<RefCell<String>>,
}

impl<E: Engine> ObservedEngine<E> {
    pub fn new(inner: E, logs: Logs) -> Self {
        Self {
            inner,
            logs,
            naming: Rc::default(),
        }
    }

    /// Names the next instance (call before loading the cell, or have the host's pacing
    /// name each instance through [`ObservedEngine::naming`]).
    pub fn name_next(&self, name: &str) {
        self.naming.replace(name.to_string());
    }

    /// The slot naming the next instance, for a pacing that is told whose instance the host
    /// makes next.
    pub fn naming(&self) -> Rc<RefCell<String>> {
        self.naming.clone()
    }
}

pub struct ObservedInstance<I: Instance> {
    inner: I,
    name: String,
    logs: Logs,
    /// The top-level export running or suspended.
    running: Option<String>,
    /// No entry is in progress (the host has not started allocating for the next one).
    between_entries: bool,
    /// The module has a start function.
    needs_start: bool,
    /// The start function ran or the start image was restored (or none is needed).
    started_up: bool,
    /// The instance's `Created` event is in the log: it is written before the instance's
    /// first event, so an instance that is made and dropped unused (the blank instance a
    /// start image is measured against) leaves nothing in the log.
    announced: std::cell::Cell<bool>,
}

/// The start functions a host runs before anything else (Pulp's order).
const START_EXPORTS: [&str; 2] = ["_initialize", "_start"];

impl<I: Instance> ObservedInstance<I> {
    /// Records start-up once: the start function called, or the image being put in.
    fn start_up(&mut self) {
        if !self.started_up {
            self.started_up = true;
            self.record(CellEvent::StartedUp);
        }
    }

    fn record(&self, e: CellEvent) {
        let mut logs = self.logs.borrow_mut();
        let log = logs.entry(self.name.clone()).or_default();
        if !self.announced.replace(true) {
            log.push(CellEvent::Created {
                start_up: self.needs_start,
            });
        }
        log.push(e);
    }

    fn outcome(&mut self, r: Result<Slice, Trap>) -> Result<Slice, Trap> {
        let export = self.running.clone().unwrap_or_default();
        match &r {
            Ok(Slice::Finished(results)) => {
                self.running = None;
                self.between_entries = true;
                self.record(CellEvent::Finish {
                    export,
                    result: results.first().copied(),
                });
            }
            Ok(Slice::OutOfFuel { .. }) => {}
            Ok(Slice::Deferred(_)) => self.record(CellEvent::Deferred),
            Err(_) => {
                self.running = None;
                self.between_entries = true;
                self.record(CellEvent::Failed { export });
            }
        }
        r
    }
}

impl<I: Instance> Drop for ObservedInstance<I> {
    fn drop(&mut self) {
        if !self.announced.get() {
            return;
        }
        self.record(CellEvent::Dropped);
    }
}

impl<E: Engine> Engine for ObservedEngine<E> {
    type Module = E::Module;
    type Instance = ObservedInstance<E::Instance>;

    fn compile(&self, wasm: &[u8]) -> Result<E::Module, LoadError> {
        self.inner.compile(wasm)
    }

    fn instantiate(
        &self,
        module: &E::Module,
        imports: &[Import],
        limits: Limits,
    ) -> Result<Self::Instance, LoadError> {
        let inner = self.inner.instantiate(module, imports, limits)?;
        let start_up = START_EXPORTS.iter().any(|s| inner.has_export(s));
        Ok(ObservedInstance {
            inner,
            name: self.naming.borrow().clone(),
            logs: self.logs.clone(),
            running: None,
            between_entries: true,
            needs_start: start_up,
            started_up: !start_up,
            announced: std::cell::Cell::new(false),
        })
    }
}

impl<I: Instance> Instance for ObservedInstance<I> {
    fn has_export(&self, name: &str) -> bool {
        self.inner.has_export(name)
    }

    fn start(&mut self, export: &str, args: &[i64], fuel: u64) -> Result<Slice, Trap> {
        self.record(CellEvent::Start {
            export: export.to_string(),
        });
        if self.running.is_some() {
            // A second entry: the engine refuses it; the log already shows it.
            return self.inner.start(export, args, fuel);
        }
        self.running = Some(export.to_string());
        self.between_entries = false;
        let r = self.inner.start(export, args, fuel);
        self.outcome(r)
    }

    fn resume_fuel(&mut self, fuel: u64) -> Result<Slice, Trap> {
        let r = self.inner.resume_fuel(fuel);
        self.outcome(r)
    }

    fn resume_host(&mut self, answer: Answer, fuel: u64) -> Result<Slice, Trap> {
        self.record(CellEvent::Answered { code: answer.code });
        let r = self.inner.resume_host(answer, fuel);
        self.outcome(r)
    }

    fn call_now(&mut self, export: &str, args: &[i64], fuel: u64) -> Result<Vec<i64>, Trap> {
        // The host's first allocation for a new entry: everything earlier entries allocated
        // should be free by now, so this is where the heap top is measured.
        if export == "pulp_alloc" && self.between_entries {
            self.between_entries = false;
            if self.inner.has_export("probe_heap_top")
                && let Ok(top) = self.inner.call_now("probe_heap_top", &[], 10_000)
            {
                self.record(CellEvent::HeapTop {
                    top: top.first().map_or(0, |t| *t as u64),
                });
            }
        }
        self.record(CellEvent::Nested {
            export: export.to_string(),
        });
        let r = self.inner.call_now(export, args, fuel);
        if START_EXPORTS.contains(&export) && r.is_ok() {
            self.start_up();
        }
        r
    }

    fn memory(&mut self) -> &mut dyn GuestMemory {
        self.inner.memory()
    }

    fn memory_size(&self) -> u64 {
        self.inner.memory_size()
    }

    fn abandon(&mut self) {
        if let Some(export) = self.running.take() {
            self.record(CellEvent::Failed { export });
        }
        self.inner.abandon();
    }

    fn fuel_consumed(&self) -> u64 {
        self.inner.fuel_consumed()
    }

    fn global(&mut self, name: &str) -> Option<GlobalValue> {
        self.inner.global(name)
    }

    fn set_global(&mut self, name: &str, value: GlobalValue) -> Result<(), Trap> {
        // Only a start image sets globals from outside.
        self.start_up();
        self.inner.set_global(name, value)
    }

    fn grow_memory(&mut self, bytes: u64) -> Result<(), Trap> {
        self.start_up();
        self.inner.grow_memory(bytes)
    }
}

pub type SimHost = CellHost<ObservedEngine<WasmiEngine>, SimPacing>;

/// The cell world of one run.
pub struct CellWorld {
    pub host: Rc<SimHost>,
    pub services: Rc<SimServices>,
    pub logs: Logs,
}

impl CellWorld {
    pub fn new(ctx: &Ctx, max_slice: u64, config: HostConfig) -> Self {
        let logs: Logs = Rc::default();
        let services = Rc::new(SimServices::new(ctx.clone()));
        let engine = ObservedEngine::new(WasmiEngine::default(), logs.clone());
        let naming = engine.naming();
        let host = CellHost::new(
            engine,
            Registry::standard(),
            services.clone(),
            SimPacing {
                ctx: ctx.clone(),
                max_slice,
                naming,
            },
            config,
        );
        Self {
            host: Rc::new(host),
            services,
            logs,
        }
    }

    /// Loads a test cell under a manifest; the instance's log is kept under its name.
    pub fn load(&self, manifest: &str, module: &str) -> Result<(), String> {
        let spec = cellhost::manifest::parse(manifest).map_err(|e| e.to_string())?;
        let wasm = cellhost::cells::wasm(module)?;
        self.load_bytes(spec, &wasm).map_err(|e| e.to_string())
    }

    pub fn load_bytes(
        &self,
        spec: cellhost::manifest::CellSpec,
        wasm: &[u8],
    ) -> Result<(), cellhost::CellError> {
        self.host.engine().name_next(&spec.name);
        let name = spec.name.clone();
        self.host.load(spec, wasm)?;
        self.services.stores.open_mailbox(&name);
        Ok(())
    }

    /// The engine-level oracles over every instance; `heap_bounded` names the cells whose heap
    /// must not grow (those whose allocator gives memory back).
    pub fn check(&self, heap_bounded: &dyn Fn(&str) -> bool) -> Vec<models::Violation> {
        self.logs
            .borrow()
            .iter()
            .flat_map(|(cell, log)| models::cells::check_instance(cell, log, heap_bounded(cell)))
            .collect()
    }
}
