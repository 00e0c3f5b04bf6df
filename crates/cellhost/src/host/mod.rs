//! The cell host: loads cells, runs their exports in fuel slices with a scheduling point between
//! slices, serves what their imports defer (sibling calls, WASI sleeps and yields), and routes
//! sibling calls.
//!
//! A cell's life: [`CellHost::load`] (or [`CellHost::load_dir`]) compiles the module, binds
//! the Pulp capabilities and WASI, instantiates it and runs its start function (`_initialize`)
//! once, or starts it from the module's start image (`crate::snapshot`); then
//! [`CellHost::init`], any number of [`CellHost::step`]s and sibling calls
//! ([`CellHost::call`] from outside, `pulp_call` from a cell), [`CellHost::shutdown`] and
//! [`CellHost::close`]. A trap, a spent fuel or time budget, or `proc_exit` inside the cell's
//! code fails the cell: its instance is dropped (its state was half-written) and every later
//! entry gets [`CellError::Failed`], unless its restart policy makes a new instance and runs
//! `pulp_init` again (as Pulp's supervisor does, at most 5 times in 30 s).

mod run;
pub(crate) mod start;
mod waits;

use crate::abi::{self, StepEnvelope};
use crate::capability::{HostServices, Registry};
use crate::cell::{Cell, CellError, CellLimits, Lifecycle, Restarts};
use crate::engine::{Engine, Instance};
use crate::manifest::{self, CellSpec, ManifestError, Restart};
use crate::{has, msgpack, planted};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use tokio::sync::Mutex;
use waits::{Entry, WaitGraph, Waiting};

/// The scheduling seam: how big a fuel slice is, what happens between slices, and where
/// observable events go. The simulation draws slices from the decision source and yields to its
/// scheduler; a hardware run uses a fixed slice and `tokio::task::yield_now`.
pub trait Pacing: 'static {
    fn fuel_slice(&self) -> u64;
    fn preempt(&self) -> Pin<Box<dyn Future<Output = ()>>>;
    fn trace(&self, event: &str, details: fmt::Arguments<'_>);
    /// An event that belongs to one cell (`lane` is `cell-<name>`), whoever runs it: sibling
    /// calls are drawn between the cells' lanes. By default, an ordinary event naming the lane.
    fn trace_on(&self, lane: &str, event: &str, details: fmt::Arguments<'_>) {
        self.trace(event, format_args!("{lane} {details}"));
    }
    /// The host is about to make an instance of `cell` (at load, at a restart, or to image
    /// its start-up): an engine wrapper that records instances learns whose the next one is.
    fn making_instance(&self, cell: &str) {
        let _ = cell;
    }
}

/// The host's limits and defaults; a cell's manifest overrides the memory limit
/// (`max_memory_pages`), the call timeout (`call_timeout_ms`) and the restart policy
/// (`restart`), and its spec may override the fuel budgets (`CellSpec::fuel`).
///
/// The fuel defaults are sized for Go cells (`docs/performance.md`): Go's `_initialize` costs
/// 9.6–13.0 M wasmi fuel, a first `pulp_alloc` ~0.14 M, a step that runs the garbage collector
/// up to ~13 M.
#[derive(Clone, Copy, Debug)]
pub struct HostConfig {
    /// Fuel for a cell's start function (`_initialize`), run once at load.
    pub start_fuel: u64,
    /// Fuel one entry (init, step, call, shutdown) may use in all; past it, `FuelExhausted`.
    pub fuel_per_entry: u64,
    /// Fuel for a host-initiated `pulp_alloc` or `pulp_free`.
    pub alloc_fuel: u64,
    /// Largest linear memory of a cell, in bytes.
    pub max_memory: u64,
    /// Largest sibling-call response copied between cells.
    pub max_response: u32,
    /// The bound on one entry in the host's time (virtual time in simulation); Pulp's
    /// default is 30 s.
    pub call_timeout_ns: Option<u64>,
    /// The restart policy of a cell whose manifest names none.
    pub default_restart: Restart,
    /// Start instances from start images (`crate::snapshot`) instead of running each one's
    /// start function. The results are the same either way.
    pub snapshots: bool,
    /// Planted bugs (see [`planted`]).
    pub bugs: u32,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            start_fuel: 50_000_000,
            fuel_per_entry: 250_000_000,
            alloc_fuel: 2_000_000,
            max_memory: 64 << 20,
            max_response: 1 << 20,
            call_timeout_ns: Some(30_000_000_000),
            default_restart: Restart::Never,
            snapshots: true,
            bugs: 0,
        }
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
    /// Numbers sibling calls, linking a call's trace lines (`send=call<n>` at the caller,
    /// `recv=call<n>` where the target enters; `ret<n>` for the answer).
    next_call: std::cell::Cell<u64>,
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
            next_call: std::cell::Cell::new(1),
        }
    }

    pub fn engine(&self) -> &E {
        &self.engine
    }

    pub fn pacing(&self) -> &P {
        &self.pacing
    }

    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    pub fn cell(&self, name: &str) -> Option<Rc<Cell<E>>> {
        self.cells.borrow().get(name).cloned()
    }

    /// The loaded cells' names, in sorted order.
    pub fn cell_names(&self) -> Vec<String> {
        self.cells.borrow().keys().cloned().collect()
    }

    /// Loads a cell from a directory holding `pulp.cell.toml` and the module it names.
    pub fn load_dir(&self, dir: &Path) -> Result<Rc<Cell<E>>, CellError> {
        let (spec, wasm) = read_cell_dir(dir)?;
        self.load(spec, &wasm)
    }

    /// The limits a cell runs under: its manifest's where set, else the host's.
    pub fn limits_for(&self, spec: &CellSpec) -> CellLimits {
        let c = &self.config;
        CellLimits {
            max_memory: spec
                .max_memory_pages
                .map_or(c.max_memory, |p| u64::from(p) * 65_536),
            start_fuel: spec.fuel.start.unwrap_or(c.start_fuel),
            entry_fuel: spec.fuel.entry.unwrap_or(c.fuel_per_entry),
            alloc_fuel: spec.fuel.alloc.unwrap_or(c.alloc_fuel),
            call_timeout_ns: spec
                .call_timeout_ms
                .map(|ms| u64::from(ms) * 1_000_000)
                .or(c.call_timeout_ns),
            restart: spec.restart.unwrap_or(c.default_restart),
        }
    }

    /// Loads a cell: checks the module against the manifest's digest, binds its
    /// capabilities and WASI, compiles and instantiates the module, and runs its start
    /// function (or starts it from the module's start image). Runs no Pulp export.
    pub fn load(&self, spec: CellSpec, wasm: &[u8]) -> Result<Rc<Cell<E>>, CellError> {
        if self.cells.borrow().contains_key(&spec.name) {
            return Err(CellError::DuplicateCell { name: spec.name });
        }
        if let Some(want) = &spec.wasm_sha256 {
            let got = start::sha256_hex(wasm);
            if &got != want {
                return Err(CellError::Manifest(ManifestError::Invalid {
                    key: "wasm_sha256".into(),
                    reason: format!("the module's SHA-256 is {got}, not {want}"),
                }));
            }
        }
        // An unknown capability is refused before anything is compiled.
        self.registry.check(&spec).map_err(CellError::Bind)?;
        let limits = self.limits_for(&spec);
        let prepared = Rc::new(self.prepare(&spec, wasm, &limits)?);
        let started = self.instantiate(&prepared, &spec, &limits)?;
        let cell = Rc::new(Cell {
            exports_free: started.instance.has_export(abi::FREE),
            exports_on_call: started.instance.has_export(abi::ON_CALL),
            instance: RefCell::new(Some(started.instance)),
            wasi: RefCell::new(Some(started.wasi)),
            lifecycle: RefCell::new(Lifecycle::Loaded),
            failure: RefCell::default(),
            restarts: RefCell::new(Restarts::default()),
            last_entry_fuel: std::cell::Cell::new(0),
            start_fuel: std::cell::Cell::new(started.start_fuel),
            entry: Arc::new(Mutex::new(())),
            prepared,
            limits,
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
            self.graph.borrow_mut().wait_for(chain, &name);
            let _waiting = Waiting {
                graph: &self.graph,
                chain,
            };
            Arc::clone(&cell.entry).lock_owned().await
        };
        self.graph.borrow_mut().hold(chain, &name);
        Ok(Entry {
            graph: self.graph.clone(),
            cell: name,
            chain,
            _lock: lock,
        })
    }

    /// Runs `pulp_init` with the manifest's `[config]` as MessagePack.
    pub async fn init(&self, name: &str) -> Result<(), CellError> {
        let cell = self.named(name)?;
        let chain = self.new_chain();
        let _entry = self.enter(&cell, chain).await?;
        match cell.lifecycle() {
            Lifecycle::Loaded => {}
            Lifecycle::Ready => return Err(CellError::InitFailed { code: -1 }),
            Lifecycle::Failed => return Err(failed(&cell)),
            Lifecycle::ShutDown => return Err(CellError::ShutDown),
            Lifecycle::Closed => return Err(CellError::Closed),
        }
        self.init_locked(&cell, chain).await
    }

    /// `pulp_init`, the entry lock held.
    async fn init_locked(&self, cell: &Rc<Cell<E>>, chain: u64) -> Result<(), CellError> {
        let config = if cell.spec.config.is_empty() {
            Vec::new()
        } else {
            msgpack::encode_table(&cell.spec.config)
        };
        let rc = self.entry(cell, chain, abi::INIT, &config, true).await;
        let code = rc?.first().copied().unwrap_or(-1);
        if code != 0 {
            return Err(CellError::InitFailed { code });
        }
        *cell.lifecycle.borrow_mut() = Lifecycle::Ready;
        self.pacing
            .trace("cell-ready", format_args!("{}", cell.name()));
        Ok(())
    }

    /// Runs one `pulp_step`; returns the output handle (0: no output).
    pub async fn step(&self, name: &str, envelope: &StepEnvelope) -> Result<i32, CellError> {
        let cell = self.named(name)?;
        let chain = self.new_chain();
        let _entry = self.enter(&cell, chain).await?;
        ready(&cell)?;
        let bytes = envelope.encode();
        let leak = envelope.is_idle() && has(self.config.bugs, planted::IDLE_TICK_ALLOC);
        let rc = self.entry(&cell, chain, abi::STEP, &bytes, !leak).await;
        if rc.is_err() {
            self.after_failure(&cell, chain).await;
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
        self.call_in(&cell, chain, function, args, None).await
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
        if cell.lifecycle() != Lifecycle::Failed {
            *cell.lifecycle.borrow_mut() = Lifecycle::ShutDown;
        }
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
        if let Some(wasi) = cell.wasi.borrow_mut().take() {
            wasi.flush();
        }
        *cell.lifecycle.borrow_mut() = Lifecycle::Closed;
        self.pacing.trace("cell-closed", format_args!("{name}"));
        Ok(())
    }
}

/// Reads a cell directory: its manifest and the module it names.
pub fn read_cell_dir(dir: &Path) -> Result<(CellSpec, Vec<u8>), CellError> {
    let io = |path: &Path, e: std::io::Error| CellError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let manifest_path = dir.join("pulp.cell.toml");
    let source = std::fs::read_to_string(&manifest_path).map_err(|e| io(&manifest_path, e))?;
    let spec = manifest::parse(&source).map_err(CellError::Manifest)?;
    let wasm_path = dir.join(&spec.wasm);
    let wasm = std::fs::read(&wasm_path).map_err(|e| io(&wasm_path, e))?;
    Ok((spec, wasm))
}

/// Every cell directory directly under `root` (a directory holding `pulp.cell.toml`), in
/// sorted order.
pub fn cell_dirs(root: &Path) -> Result<Vec<std::path::PathBuf>, CellError> {
    let entries = std::fs::read_dir(root).map_err(|e| CellError::Io {
        path: root.display().to_string(),
        message: e.to_string(),
    })?;
    let mut dirs: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("pulp.cell.toml").is_file())
        .collect();
    dirs.sort();
    Ok(dirs)
}

fn failed<E: Engine>(cell: &Cell<E>) -> CellError {
    match cell.failure() {
        Some(f) => CellError::Failed(f),
        None => CellError::Closed,
    }
}

fn ready<E: Engine>(cell: &Cell<E>) -> Result<(), CellError> {
    match cell.lifecycle() {
        Lifecycle::Ready => Ok(()),
        Lifecycle::Loaded => Err(CellError::NotInitialized),
        Lifecycle::Failed => Err(failed(cell)),
        Lifecycle::ShutDown => Err(CellError::ShutDown),
        Lifecycle::Closed => Err(CellError::Closed),
    }
}
