//! The cell host: loads cells, runs their exports in fuel slices with a scheduling point between
//! slices, and routes sibling calls. Every entry into a cell holds that cell's lock, so a
//! sibling call into A is serialized with A's own step loop. Cycles are found from explicit
//! call chains and a wait-for graph, never from a timeout: a call that would wait for a cell its
//! own chain holds, or for a cell whose holder (transitively) waits for its chain, fails with
//! `Reentrant` at once.

use crate::abi::{self, StepEnvelope, call_code, on_call_code};
use crate::capability::{Binding, HostServices, Registry, SiblingRequest};
use crate::cell::{Cell, CellError, Lifecycle};
use crate::engine::{Answer, Delivery, Engine, Instance, Limits, Slice, Trap};
use crate::manifest::{self, CellSpec};
use crate::{has, msgpack, planted};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use tokio::sync::{Mutex, OwnedMutexGuard};

/// The scheduling seam: how big a fuel slice is, what happens between slices, and where
/// observable events go. The simulation draws slices from the decision source and yields to its
/// scheduler; a hardware run uses a fixed slice and `tokio::task::yield_now`.
pub trait Pacing: 'static {
    fn fuel_slice(&self) -> u64;
    fn preempt(&self) -> Pin<Box<dyn Future<Output = ()>>>;
    fn trace(&self, event: &str, details: fmt::Arguments<'_>);
}

#[derive(Clone, Copy, Debug)]
pub struct HostConfig {
    /// Fuel one entry (init, step, call, shutdown) may use in all; past it, `FuelExhausted`.
    pub fuel_per_entry: u64,
    /// Fuel for a host-initiated `pulp_alloc` or `pulp_free`.
    pub alloc_fuel: u64,
    /// Largest linear memory of a cell, in bytes.
    pub max_memory: u64,
    /// Largest sibling-call response copied between cells.
    pub max_response: u32,
    /// Planted bugs (see [`planted`]).
    pub bugs: u32,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            fuel_per_entry: 10_000_000,
            alloc_fuel: 100_000,
            max_memory: 16 << 20,
            max_response: 1 << 20,
            bugs: 0,
        }
    }
}

/// Which chain holds which cell, and which cell each chain waits for.
#[derive(Default)]
struct WaitGraph {
    held_by: BTreeMap<String, u64>,
    waits: BTreeMap<u64, String>,
    /// Cells each chain holds, outermost first.
    held: BTreeMap<u64, Vec<String>>,
}

impl WaitGraph {
    /// The cycle that waiting for `cell` would close, if any.
    fn cycle(&self, chain: u64, cell: &str) -> Option<Vec<String>> {
        let mine = self.held.get(&chain).cloned().unwrap_or_default();
        if mine.iter().any(|c| c == cell) {
            let mut path = mine;
            path.push(cell.to_string());
            return Some(path);
        }
        let mut path = mine;
        path.push(cell.to_string());
        let mut at = cell.to_string();
        // Each step follows a holder to what it waits for; a chain waits for at most one cell,
        // so the walk is bounded by the number of chains.
        for _ in 0..=self.waits.len() {
            let &holder = self.held_by.get(&at)?;
            if holder == chain {
                return Some(path);
            }
            let next = self.waits.get(&holder)?;
            path.push(next.clone());
            at = next.clone();
        }
        None
    }
}

/// Holding a cell's entry lock for a chain.
struct Entry {
    graph: Rc<RefCell<WaitGraph>>,
    cell: String,
    chain: u64,
    _lock: OwnedMutexGuard<()>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        let mut g = self.graph.borrow_mut();
        g.held_by.remove(&self.cell);
        if let Some(held) = g.held.get_mut(&self.chain) {
            held.retain(|c| *c != self.cell);
            if held.is_empty() {
                g.held.remove(&self.chain);
            }
        }
    }
}

/// Stops waiting for a lock (also when the waiting future is dropped).
struct Waiting<'a> {
    graph: &'a RefCell<WaitGraph>,
    chain: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.graph.borrow_mut().waits.remove(&self.chain);
    }
}

pub struct CellHost<E: Engine, P: Pacing> {
    engine: E,
    registry: Registry,
    services: Rc<dyn HostServices>,
    pacing: P,
    config: HostConfig,
    cells: RefCell<BTreeMap<String, Rc<Cell<E>>>>,
    graph: Rc<RefCell<WaitGraph>>,
    next_chain: std::cell::Cell<u64>,
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

impl<E: Engine, P: Pacing> CellHost<E, P> {
    pub fn new(
        engine: E,
        registry: Registry,
        services: Rc<dyn HostServices>,
        pacing: P,
        config: HostConfig,
    ) -> Self {
        Self {
            engine,
            registry,
            services,
            pacing,
            config,
            cells: RefCell::default(),
            graph: Rc::default(),
            next_chain: std::cell::Cell::new(1),
        }
    }

    pub fn engine(&self) -> &E {
        &self.engine
    }

    pub fn pacing(&self) -> &P {
        &self.pacing
    }

    pub fn cell(&self, name: &str) -> Option<Rc<Cell<E>>> {
        self.cells.borrow().get(name).cloned()
    }

    /// Loads a cell from a directory holding `pulp.cell.toml` and the module it names.
    pub fn load_dir(&self, dir: &Path) -> Result<Rc<Cell<E>>, CellError> {
        let io = |path: &Path, e: std::io::Error| CellError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let manifest_path = dir.join("pulp.cell.toml");
        let source = std::fs::read_to_string(&manifest_path).map_err(|e| io(&manifest_path, e))?;
        let spec = manifest::parse(&source).map_err(CellError::Manifest)?;
        let wasm_path = dir.join(&spec.wasm);
        let wasm = std::fs::read(&wasm_path).map_err(|e| io(&wasm_path, e))?;
        self.load(spec, &wasm)
    }

    /// Loads a cell: binds its capabilities, compiles and instantiates its module (running no
    /// cell code).
    pub fn load(&self, spec: CellSpec, wasm: &[u8]) -> Result<Rc<Cell<E>>, CellError> {
        if self.cells.borrow().contains_key(&spec.name) {
            return Err(CellError::DuplicateCell { name: spec.name });
        }
        let binding = Binding {
            cell: Rc::from(spec.name.as_str()),
            services: self.services.clone(),
        };
        let imports = self
            .registry
            .bind(
                &spec,
                &binding,
                has(self.config.bugs, planted::BIND_UNDECLARED),
            )
            .map_err(CellError::Bind)?;
        let module = self.engine.compile(wasm).map_err(CellError::Load)?;
        let limits = Limits {
            max_memory: self.config.max_memory,
            fuel_per_entry: self.config.fuel_per_entry,
        };
        let instance = self
            .engine
            .instantiate(&module, &imports, limits)
            .map_err(CellError::Load)?;
        let cell = Rc::new(Cell {
            exports_free: instance.has_export(abi::FREE),
            exports_on_call: instance.has_export(abi::ON_CALL),
            instance: RefCell::new(Some(instance)),
            lifecycle: RefCell::new(Lifecycle::Loaded),
            entry: Arc::new(Mutex::new(())),
            spec,
        });
        self.pacing
            .trace("cell-loaded", format_args!("{}", cell.name()));
        self.cells
            .borrow_mut()
            .insert(cell.name().to_string(), cell.clone());
        Ok(cell)
    }

    fn named(&self, name: &str) -> Result<Rc<Cell<E>>, CellError> {
        self.cell(name).ok_or_else(|| CellError::Io {
            path: name.to_string(),
            message: "no such cell".into(),
        })
    }

    fn new_chain(&self) -> u64 {
        let id = self.next_chain.get();
        self.next_chain.set(id + 1);
        id
    }

    async fn enter(&self, cell: &Rc<Cell<E>>, chain: u64) -> Result<Entry, CellError> {
        let name = cell.name().to_string();
        if !has(self.config.bugs, planted::NO_CYCLE_CHECK)
            && let Some(chain_cells) = self.graph.borrow().cycle(chain, &name)
        {
            return Err(CellError::Reentrant { chain: chain_cells });
        }
        let lock = {
            self.graph.borrow_mut().waits.insert(chain, name.clone());
            let _waiting = Waiting {
                graph: &self.graph,
                chain,
            };
            Arc::clone(&cell.entry).lock_owned().await
        };
        let mut g = self.graph.borrow_mut();
        g.held_by.insert(name.clone(), chain);
        g.held.entry(chain).or_default().push(name.clone());
        Ok(Entry {
            graph: self.graph.clone(),
            cell: name,
            chain,
            _lock: lock,
        })
    }

    fn with_instance<R>(
        cell: &Cell<E>,
        f: impl FnOnce(&mut E::Instance) -> R,
    ) -> Result<R, CellError> {
        let mut slot = cell.instance.borrow_mut();
        let instance = slot.as_mut().ok_or(CellError::Closed)?;
        Ok(f(instance))
    }

    /// A buffer from the cell's own allocator, checked to lie inside its memory.
    fn alloc(&self, cell: &Cell<E>, data: &[u8]) -> Result<u32, CellError> {
        if data.is_empty() {
            return Ok(0);
        }
        let size =
            u32::try_from(data.len()).map_err(|_| CellError::AllocFailed { size: u32::MAX })?;
        Self::with_instance(cell, |i| {
            let out = i.call_now(abi::ALLOC, &[i64::from(size)], self.config.alloc_fuel)?;
            let ptr = out.first().map_or(0, |p| *p as u32);
            if ptr == 0 {
                return Err(CellError::AllocFailed { size });
            }
            i.memory().write(ptr, data)?;
            Ok(ptr)
        })?
    }

    fn free(&self, cell: &Cell<E>, ptr: u32, size: u32) {
        if ptr == 0 || !cell.exports_free {
            return;
        }
        let freed = Self::with_instance(cell, |i| {
            i.call_now(
                abi::FREE,
                &[i64::from(ptr), i64::from(size)],
                self.config.alloc_fuel,
            )
        });
        if let Ok(Err(t)) = freed {
            self.pacing
                .trace("cell-free-failed", format_args!("{} {t}", cell.name()));
        }
    }

    /// Runs an export to its end in fuel slices, serving deferred imports on the way.
    fn run_export<'a>(
        &'a self,
        cell: &'a Rc<Cell<E>>,
        chain: u64,
        export: &'static str,
        args: Vec<i64>,
    ) -> Boxed<'a, Result<Vec<i64>, CellError>> {
        Box::pin(async move {
            let budget = self.config.fuel_per_entry;
            let mut fuel = self.pacing.fuel_slice().clamp(1, budget);
            let mut used = 0u64;
            let out_of_budget = |t: Trap| {
                if t.out_of_fuel {
                    CellError::FuelExhausted {
                        export,
                        fuel: budget,
                    }
                } else {
                    CellError::Trap(t)
                }
            };
            let mut slice = Self::with_instance(cell, |i| i.start(export, &args, fuel))?
                .map_err(out_of_budget)?;
            loop {
                slice = match slice {
                    Slice::Finished(results) => return Ok(results),
                    Slice::OutOfFuel { required } => {
                        used += fuel;
                        if used.saturating_add(required) > budget {
                            let _ = Self::with_instance(cell, |i| i.abandon());
                            return Err(CellError::FuelExhausted {
                                export,
                                fuel: budget,
                            });
                        }
                        self.pacing.preempt().await;
                        fuel = self
                            .pacing
                            .fuel_slice()
                            .max(required)
                            .clamp(1, budget - used);
                        Self::with_instance(cell, |i| i.resume_fuel(fuel))?
                            .map_err(out_of_budget)?
                    }
                    Slice::Deferred(request) => {
                        let answer = match request.downcast::<SiblingRequest>() {
                            Ok(req) => self.serve_sibling(cell, chain, *req).await,
                            Err(_) => Answer {
                                code: i64::from(call_code::STUBBED),
                                delivery: None,
                            },
                        };
                        Self::with_instance(cell, |i| i.resume_host(answer, fuel))?
                            .map_err(out_of_budget)?
                    }
                };
            }
        })
    }

    /// Serves `pulp_call` from `caller`: the code the caller sees, and the response for the
    /// engine to deliver through the caller's allocator.
    async fn serve_sibling(&self, caller: &Rc<Cell<E>>, chain: u64, req: SiblingRequest) -> Answer {
        let code = |c: u32| Answer {
            code: i64::from(c),
            delivery: None,
        };
        let Some(target) = self.cell(&req.target) else {
            return code(call_code::UNKNOWN_TARGET);
        };
        if !target.authorizes(caller.spec()) {
            return code(call_code::NOT_AUTHORIZED);
        }
        self.pacing.trace(
            "cell-call",
            format_args!("{} -> {}.{}", caller.name(), target.name(), req.function),
        );
        match self.call_in(&target, chain, &req.function, &req.args).await {
            Ok(bytes) => Answer {
                code: i64::from(call_code::OK),
                delivery: Some(Delivery {
                    bytes,
                    ptr_out: req.resp_ptr_out,
                    len_out: req.resp_len_out,
                    alloc_fuel: self.config.alloc_fuel,
                    alloc_failed: i64::from(call_code::CALLER_ALLOC_FAILED),
                    write_failed: i64::from(call_code::WRITE_FAILED),
                }),
            },
            Err(e) => {
                self.pacing.trace(
                    "cell-call-failed",
                    format_args!("{} -> {}: {e}", caller.name(), target.name()),
                );
                code(match e {
                    CellError::Reentrant { .. } => call_code::REENTRANT,
                    CellError::ShutDown | CellError::Closed | CellError::NotInitialized => {
                        call_code::TARGET_GONE
                    }
                    _ => call_code::TARGET_ERROR,
                })
            }
        }
    }

    /// Runs `pulp_on_call` in `target` for a chain.
    async fn call_in(
        &self,
        target: &Rc<Cell<E>>,
        chain: u64,
        function: &str,
        args: &[u8],
    ) -> Result<Vec<u8>, CellError> {
        let _entry = self.enter(target, chain).await?;
        ready(target)?;
        if !target.exports_on_call {
            return Err(CellError::CallFailed {
                code: on_call_code::NO_PROVIDER,
            });
        }
        let name_ptr = self.alloc(target, function.as_bytes())?;
        let args_ptr = self.alloc(target, args)?;
        let out_ptr = self.alloc(target, &[0u8; 8])?;
        let (name_len, args_len) = (function.len() as u32, args.len() as u32);
        let outcome = self
            .run_export(
                target,
                chain,
                abi::ON_CALL,
                vec![
                    i64::from(name_ptr),
                    i64::from(name_len),
                    i64::from(args_ptr),
                    i64::from(args_len),
                    i64::from(out_ptr),
                    i64::from(out_ptr) + 4,
                ],
            )
            .await;
        let response = outcome.and_then(|rc| self.take_response(target, rc, out_ptr));
        let (resp_ptr, resp_len, result) = match response {
            Ok((ptr, len, bytes)) => (ptr, len, Ok(bytes)),
            Err(e) => (0, 0, Err(e)),
        };
        // Free in reverse order of allocation (the response was allocated last, by the cell).
        if !has(self.config.bugs, planted::LEAK_CALL_RESPONSE) {
            self.free(target, resp_ptr, resp_len);
        }
        self.free(target, out_ptr, 8);
        self.free(target, args_ptr, args_len);
        self.free(target, name_ptr, name_len);
        result
    }

    /// The response a finished `pulp_on_call` left: (ptr, len, bytes).
    fn take_response(
        &self,
        target: &Cell<E>,
        rc: Vec<i64>,
        out_ptr: u32,
    ) -> Result<(u32, u32, Vec<u8>), CellError> {
        let code = rc
            .first()
            .map_or(on_call_code::PROVIDER_ERROR, |c| *c as u32);
        Self::with_instance(target, |i| {
            let out = i.memory().read(out_ptr, 8)?;
            let word =
                |at: usize| u32::from_le_bytes([out[at], out[at + 1], out[at + 2], out[at + 3]]);
            let (ptr, len) = (word(0), word(4));
            if code != on_call_code::OK {
                return Err(CellError::CallFailed { code });
            }
            if len > self.config.max_response {
                return Err(CellError::CallFailed {
                    code: on_call_code::PROVIDER_ERROR,
                });
            }
            let bytes = if len == 0 {
                Vec::new()
            } else {
                i.memory().read(ptr, len)?
            };
            Ok((ptr, len, bytes))
        })?
    }

    /// Runs `pulp_init` with the manifest's `[config]` as MessagePack.
    pub async fn init(&self, name: &str) -> Result<(), CellError> {
        let cell = self.named(name)?;
        let chain = self.new_chain();
        let _entry = self.enter(&cell, chain).await?;
        match cell.lifecycle() {
            Lifecycle::Loaded => {}
            Lifecycle::Ready => return Err(CellError::InitFailed { code: -1 }),
            Lifecycle::ShutDown => return Err(CellError::ShutDown),
            Lifecycle::Closed => return Err(CellError::Closed),
        }
        let config = if cell.spec.config.is_empty() {
            Vec::new()
        } else {
            msgpack::encode_table(&cell.spec.config)
        };
        let ptr = self.alloc(&cell, &config)?;
        let len = config.len() as u32;
        let rc = self
            .run_export(
                &cell,
                chain,
                abi::INIT,
                vec![i64::from(ptr), i64::from(len)],
            )
            .await;
        self.free(&cell, ptr, len);
        let code = rc?.first().copied().unwrap_or(-1);
        if code != 0 {
            return Err(CellError::InitFailed { code });
        }
        *cell.lifecycle.borrow_mut() = Lifecycle::Ready;
        self.pacing.trace("cell-ready", format_args!("{name}"));
        Ok(())
    }

    /// Runs one `pulp_step`; returns the output handle (0: no output).
    pub async fn step(&self, name: &str, envelope: &StepEnvelope) -> Result<i32, CellError> {
        let cell = self.named(name)?;
        let chain = self.new_chain();
        let _entry = self.enter(&cell, chain).await?;
        ready(&cell)?;
        let bytes = envelope.encode();
        let ptr = self.alloc(&cell, &bytes)?;
        let len = bytes.len() as u32;
        let rc = self
            .run_export(
                &cell,
                chain,
                abi::STEP,
                vec![i64::from(ptr), i64::from(len)],
            )
            .await;
        let leak = envelope.is_idle() && has(self.config.bugs, planted::IDLE_TICK_ALLOC);
        if !leak {
            self.free(&cell, ptr, len);
        }
        Ok(rc?.first().copied().unwrap_or(0) as i32)
    }

    /// A sibling call from outside any cell (the host's own request, e.g. an external event
    /// routed to a provider).
    pub async fn call(
        &self,
        target: &str,
        function: &str,
        args: &[u8],
    ) -> Result<Vec<u8>, CellError> {
        let cell = self.named(target)?;
        let chain = self.new_chain();
        self.call_in(&cell, chain, function, args).await
    }

    /// Runs `pulp_shutdown`; the cell takes no more steps or calls, whatever it returns.
    pub async fn shutdown(&self, name: &str) -> Result<(), CellError> {
        let cell = self.named(name)?;
        let chain = self.new_chain();
        let _entry = self.enter(&cell, chain).await?;
        ready(&cell)?;
        let rc = self
            .run_export(&cell, chain, abi::SHUTDOWN, Vec::new())
            .await;
        *cell.lifecycle.borrow_mut() = Lifecycle::ShutDown;
        self.pacing.trace("cell-shutdown", format_args!("{name}"));
        let code = rc?.first().copied().unwrap_or(-1);
        if code != 0 {
            return Err(CellError::ShutdownFailed { code });
        }
        Ok(())
    }

    /// Drops the cell's instance. Waits for any entry in progress; safe to call twice.
    pub async fn close(&self, name: &str) -> Result<(), CellError> {
        let cell = self.named(name)?;
        let _entry = if has(self.config.bugs, planted::CLOSE_WITHOUT_LOCK) {
            None
        } else {
            let chain = self.new_chain();
            Some(self.enter(&cell, chain).await?)
        };
        if cell.lifecycle() == Lifecycle::Closed {
            return Ok(());
        }
        cell.instance.borrow_mut().take();
        *cell.lifecycle.borrow_mut() = Lifecycle::Closed;
        self.pacing.trace("cell-closed", format_args!("{name}"));
        Ok(())
    }
}

fn ready<E: Engine>(cell: &Cell<E>) -> Result<(), CellError> {
    match cell.lifecycle() {
        Lifecycle::Ready => Ok(()),
        Lifecycle::Loaded => Err(CellError::NotInitialized),
        Lifecycle::ShutDown => Err(CellError::ShutDown),
        Lifecycle::Closed => Err(CellError::Closed),
    }
}
