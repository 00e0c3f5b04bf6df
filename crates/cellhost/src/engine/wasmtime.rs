//! The hardware engine: wasmtime 48 (Cranelift), fuel on, NaN canonicalisation. Exports run as
//! `call_async` futures polled by the host: `fuel_async_yield_interval` makes the future return
//! `Pending` after each slice (a preemption point), and a deferred import is an async host
//! function that waits for the host's answer, then delivers the response through the caller's
//! own `pulp_alloc`. Fuel units differ from wasmi's, so slices cut at other instructions; only
//! observable results are compared between engines.
//!
//! wasmtime requires `Send` store data and host closures, while our imports hold `Rc` state
//! (they run on the host's one thread). So closures carry only (instance id, import index), and
//! the import table and the deferred-call slots live in thread-locals of the thread that
//! drives the instance: no `unsafe`, and an instance is only ever polled on that thread.

use super::{
    Answer, Engine, ExportShape, GlobalValue, GuestMemory, HostOutcome, Import, Instance, Limits,
    LoadError, MemoryError, Slice, Trap, check_pulp_exports, copy_in, copy_out, signature,
};
use crate::abi::{self, ValType};
use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use wasmtime::{
    Caller, Config, ExternType, Func, FuncType, Memory, Module, Store, StoreLimits,
    StoreLimitsBuilder, Val,
};

#[derive(Default)]
struct DeferSlot {
    request: Option<Box<dyn Any>>,
    answer: Option<Answer>,
}

thread_local! {
    static IMPORTS: RefCell<BTreeMap<u64, Vec<Import>>> = RefCell::default();
    static DEFERRED: RefCell<BTreeMap<u64, DeferSlot>> = RefCell::default();
    static NEXT_ID: Cell<u64> = const { Cell::new(1) };
}

pub struct WasmtimeEngine {
    engine: wasmtime::Engine,
}

impl Default for WasmtimeEngine {
    fn default() -> Self {
        let mut config = Config::new();
        config.consume_fuel(true);
        config.cranelift_nan_canonicalization(true);
        // Config::new() only fails on invalid settings; these are valid.
        let engine = wasmtime::Engine::new(&config).unwrap_or_default();
        Self { engine }
    }
}

#[derive(Clone)]
pub struct WasmtimeModule(Module);

struct State {
    id: u64,
    limits: StoreLimits,
    /// A call the host runs to completion is running: imports may not defer.
    nested: bool,
}

/// WASI `proc_exit`, raised by a host function to end the running export.
#[derive(Debug)]
struct ProcExit(u32);

impl std::fmt::Display for ProcExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "proc_exit({})", self.0)
    }
}

impl std::error::Error for ProcExit {}

type Running = Pin<Box<dyn Future<Output = (Store<State>, wasmtime::Result<Vec<Val>>)>>>;

pub struct WasmtimeInstance {
    id: u64,
    budget: u64,
    /// Absent while an export runs (the call future owns it).
    store: Option<Store<State>>,
    instance: wasmtime::Instance,
    memory: Memory,
    exports: BTreeSet<String>,
    running: Option<Running>,
    /// Fuel used by finished calls.
    consumed: u64,
    /// Fuel the store was given for the call now running.
    granted: u64,
}

fn to_wt(t: ValType) -> wasmtime::ValType {
    match t {
        ValType::I32 => wasmtime::ValType::I32,
        ValType::I64 => wasmtime::ValType::I64,
    }
}

fn from_wt(types: impl Iterator<Item = wasmtime::ValType>) -> Option<Vec<ValType>> {
    types
        .map(|t| match t {
            wasmtime::ValType::I32 => Some(ValType::I32),
            wasmtime::ValType::I64 => Some(ValType::I64),
            _ => None,
        })
        .collect()
}

fn val(v: &Val) -> i64 {
    match v {
        Val::I32(x) => i64::from(*x),
        Val::I64(x) => *x,
        _ => 0,
    }
}

fn to_val(t: &wasmtime::ValType, x: i64) -> Val {
    match t {
        wasmtime::ValType::I64 => Val::I64(x),
        _ => Val::I32(x as i32),
    }
}

fn trap(e: &wasmtime::Error) -> Trap {
    if let Some(ProcExit(code)) = e.downcast_ref::<ProcExit>() {
        return Trap::exit(*code);
    }
    Trap {
        message: format!("{e:#}"),
        out_of_fuel: e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::OutOfFuel),
        exit_code: None,
    }
}

/// Waits for the host's answer to instance `id`'s deferred import.
struct WaitAnswer {
    id: u64,
}

impl Future for WaitAnswer {
    type Output = Option<Answer>;
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Answer>> {
        let id = self.id;
        DEFERRED.with(|d| match d.borrow_mut().get_mut(&id) {
            None => Poll::Ready(None),
            Some(slot) => match slot.answer.take() {
                Some(a) => Poll::Ready(Some(a)),
                None => Poll::Pending,
            },
        })
    }
}

struct CallerMemory<'a, 'b> {
    caller: &'a mut Caller<'b, State>,
    memory: Option<Memory>,
}

impl GuestMemory for CallerMemory<'_, '_> {
    fn size(&self) -> u64 {
        self.memory
            .map_or(0, |m| m.data(&*self.caller).len() as u64)
    }
    fn read(&self, ptr: u32, len: u32) -> Result<Vec<u8>, MemoryError> {
        let data = self.memory.map_or(&[][..], |m| m.data(&*self.caller));
        copy_out(data, ptr, len)
    }
    fn write(&mut self, ptr: u32, bytes: &[u8]) -> Result<(), MemoryError> {
        match self.memory {
            Some(m) => copy_in(m.data_mut(&mut *self.caller), ptr, bytes),
            None => Err(MemoryError {
                ptr,
                len: bytes.len() as u32,
                size: 0,
            }),
        }
    }
    fn may_suspend(&self) -> bool {
        !self.caller.data().nested
    }
}

/// What an import did: returned a value, deferred, or ended the instance.
enum Ran {
    Value(i64),
    Deferred,
    Exit(u32),
}

/// Runs import `index` of the instance whose store this is.
fn run_import(caller: &mut Caller<'_, State>, index: usize, args: &[i64]) -> Result<Ran, Trap> {
    let id = caller.data().id;
    let run = IMPORTS.with(|m| {
        m.borrow()
            .get(&id)
            .and_then(|v| v.get(index))
            .map(|i| i.run.clone())
    });
    let Some(run) = run else {
        return Err(Trap::new("import table missing"));
    };
    let memory = caller
        .get_export(abi::MEMORY)
        .and_then(wasmtime::Extern::into_memory);
    let mut mem = CallerMemory { caller, memory };
    match run(&mut mem, args) {
        HostOutcome::Return(x) => Ok(Ran::Value(x)),
        HostOutcome::Defer(request) => {
            DEFERRED.with(|d| d.borrow_mut().entry(id).or_default().request = Some(request));
            Ok(Ran::Deferred)
        }
        HostOutcome::Exit(code) => Ok(Ran::Exit(code)),
    }
}

/// The deferred import's result once the host answered: delivers the response bytes through
/// the caller's `pulp_alloc` first.
async fn finish_deferred(caller: &mut Caller<'_, State>, answer: Answer) -> i64 {
    let Some(d) = &answer.delivery else {
        return answer.code;
    };
    let ptr = if d.bytes.is_empty() {
        Some(0)
    } else {
        let alloc = caller
            .get_export(abi::ALLOC)
            .and_then(wasmtime::Extern::into_func);
        match alloc {
            Some(f) => {
                let mut out = [Val::I32(0)];
                let args = [Val::I32(d.bytes.len() as i32)];
                caller.data_mut().nested = true;
                let called = f.call_async(&mut *caller, &args, &mut out).await;
                caller.data_mut().nested = false;
                match called {
                    Ok(()) => Some(val(&out[0]) as u32),
                    Err(_) => None,
                }
            }
            None => None,
        }
    };
    let memory = caller
        .get_export(abi::MEMORY)
        .and_then(wasmtime::Extern::into_memory);
    let mut mem = CallerMemory { caller, memory };
    d.deliver(answer.code, |_| ptr, &mut mem)
}

fn host_func(store: &mut Store<State>, import: &Import, index: usize) -> Func {
    let engine = store.engine().clone();
    let ty = FuncType::new(
        &engine,
        import.params.iter().copied().map(to_wt),
        import.results.iter().copied().map(to_wt),
    );
    // The result slots wasmtime hands in are placeholders; their type comes from the import.
    let result_type = import.results.first().copied().map(to_wt);
    Func::new_async(store, ty, move |mut caller, params, results| {
        let result_type = result_type.clone();
        let args: Vec<i64> = params.iter().map(val).collect();
        Box::new(async move {
            let value = match run_import(&mut caller, index, &args) {
                Ok(Ran::Value(x)) => x,
                Ok(Ran::Deferred) => {
                    let id = caller.data().id;
                    match (WaitAnswer { id }).await {
                        Some(answer) => finish_deferred(&mut caller, answer).await,
                        None => return Err(wasmtime::Error::msg("deferred call dropped")),
                    }
                }
                Ok(Ran::Exit(code)) => return Err(wasmtime::Error::new(ProcExit(code))),
                Err(t) => return Err(wasmtime::Error::msg(t.message)),
            };
            if let (Some(slot), Some(ty)) = (results.first_mut(), result_type) {
                *slot = to_val(&ty, value);
            }
            Ok(())
        })
    })
}

impl Engine for WasmtimeEngine {
    type Module = WasmtimeModule;
    type Instance = WasmtimeInstance;

    fn compile(&self, wasm: &[u8]) -> Result<WasmtimeModule, LoadError> {
        let module = Module::new(&self.engine, wasm).map_err(|e| LoadError::InvalidWasm {
            message: format!("{e:#}"),
        })?;
        check_pulp_exports(|name| {
            let export = module.exports().find(|e| e.name() == name)?;
            Some(match export.ty() {
                ExternType::Memory(_) => ExportShape::Memory,
                ExternType::Func(ty) => {
                    let (params, results) = (from_wt(ty.params()), from_wt(ty.results()));
                    let shown = match (&params, &results) {
                        (Some(p), Some(r)) => signature(p, r),
                        _ => "a signature with non-integer types".into(),
                    };
                    ExportShape::Func {
                        params,
                        results,
                        shown,
                    }
                }
                _ => ExportShape::Other,
            })
        })?;
        Ok(WasmtimeModule(module))
    }

    fn instantiate(
        &self,
        module: &WasmtimeModule,
        imports: &[Import],
        limits: Limits,
    ) -> Result<WasmtimeInstance, LoadError> {
        let id = NEXT_ID.with(|n| {
            let id = n.get();
            n.set(id + 1);
            id
        });
        let state = State {
            id,
            limits: StoreLimitsBuilder::new()
                .memory_size(usize::try_from(limits.max_memory).unwrap_or(usize::MAX))
                .instances(1)
                .build(),
            nested: false,
        };
        // The module's own engine: it may have been compiled by another host's engine.
        let mut store = Store::new(module.0.engine(), state);
        store.limiter(|s| &mut s.limits);
        let mut externs = Vec::new();
        for import in module.0.imports() {
            let (m, name) = (import.module(), import.name());
            let found = imports.iter().position(|i| i.module == m && i.name == name);
            let Some(index) = found else {
                return Err(LoadError::UnknownImport {
                    module: m.into(),
                    name: name.into(),
                });
            };
            let expected = &imports[index];
            if let ExternType::Func(ty) = import.ty() {
                let ok = from_wt(ty.params()).as_deref() == Some(expected.params)
                    && from_wt(ty.results()).as_deref() == Some(expected.results);
                if !ok {
                    return Err(LoadError::Link {
                        message: format!(
                            "import `{m}.{name}` has the wrong type (expected {})",
                            signature(expected.params, expected.results)
                        ),
                    });
                }
            }
            externs.push(wasmtime::Extern::Func(host_func(
                &mut store, expected, index,
            )));
        }
        IMPORTS.with(|t| t.borrow_mut().insert(id, imports.to_vec()));
        let instance = poll_to_end(wasmtime::Instance::new_async(
            &mut store, &module.0, &externs,
        ))
        .map_err(|e| LoadError::Link {
            message: format!("{e:#}"),
        })?;
        let memory = instance
            .get_memory(&mut store, abi::MEMORY)
            .ok_or(LoadError::MissingExport { name: abi::MEMORY })?;
        let exports = module.0.exports().map(|e| e.name().to_string()).collect();
        Ok(WasmtimeInstance {
            id,
            budget: limits.fuel_per_entry,
            store: Some(store),
            instance,
            memory,
            exports,
            running: None,
            consumed: 0,
            granted: 0,
        })
    }
}

/// Polls a future that needs no wake-up from outside (no deferred imports) to its end.
fn poll_to_end<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

impl WasmtimeInstance {
    fn suspended(&self) -> Trap {
        Trap::new("the instance is running an export")
    }

    /// Counts the fuel the call that just gave the store back used.
    fn settle_fuel(&mut self) {
        let left = self
            .store
            .as_ref()
            .and_then(|s| s.get_fuel().ok())
            .unwrap_or(0);
        self.consumed += self.granted.saturating_sub(left);
        self.granted = left;
    }

    fn poll(&mut self) -> Result<Slice, Trap> {
        let Some(fut) = self.running.as_mut() else {
            return Err(Trap::new("nothing is running"));
        };
        let mut cx = Context::from_waker(Waker::noop());
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready((store, result)) => {
                self.running = None;
                self.store = Some(store);
                self.settle_fuel();
                match result {
                    Ok(values) => Ok(Slice::Finished(values.iter().map(val).collect())),
                    Err(e) => Err(trap(&e)),
                }
            }
            Poll::Pending => {
                let id = self.id;
                let request =
                    DEFERRED.with(|d| d.borrow_mut().get_mut(&id).and_then(|s| s.request.take()));
                Ok(match request {
                    Some(r) => Slice::Deferred(r),
                    None => Slice::OutOfFuel { required: 0 },
                })
            }
        }
    }
}

impl Drop for WasmtimeInstance {
    fn drop(&mut self) {
        self.running = None;
        let id = self.id;
        IMPORTS.with(|t| t.borrow_mut().remove(&id));
        DEFERRED.with(|d| d.borrow_mut().remove(&id));
    }
}

impl Instance for WasmtimeInstance {
    fn has_export(&self, name: &str) -> bool {
        self.exports.contains(name)
    }

    fn start(&mut self, export: &str, args: &[i64], fuel: u64) -> Result<Slice, Trap> {
        let Some(mut store) = self.store.take() else {
            return Err(self.suspended());
        };
        let Some(func) = self.instance.get_func(&mut store, export) else {
            self.store = Some(store);
            return Err(Trap::new(format!("no export `{export}`")));
        };
        let ty = func.ty(&store);
        let params: Vec<Val> = ty.params().zip(args).map(|(t, x)| to_val(&t, *x)).collect();
        let mut results: Vec<Val> = ty.results().map(|t| to_val(&t, 0)).collect();
        // The host keeps the budget; the store's fuel is the same budget, so that an abandoned
        // call can be run out (see `abandon`).
        let set = store
            .set_fuel(self.budget.max(1))
            .and_then(|()| store.fuel_async_yield_interval(Some(fuel.max(1))));
        if let Err(e) = set {
            self.store = Some(store);
            return Err(trap(&e));
        }
        self.granted = self.budget.max(1);
        self.running = Some(Box::pin(async move {
            let r = func.call_async(&mut store, &params, &mut results).await;
            (store, r.map(|()| results))
        }));
        self.poll()
    }

    fn resume_fuel(&mut self, _fuel: u64) -> Result<Slice, Trap> {
        // The yield interval is fixed for the whole call (the store is inside the future).
        self.poll()
    }

    fn resume_host(&mut self, answer: Answer, _fuel: u64) -> Result<Slice, Trap> {
        let id = self.id;
        DEFERRED.with(|d| d.borrow_mut().entry(id).or_default().answer = Some(answer));
        self.poll()
    }

    fn call_now(&mut self, export: &str, args: &[i64], fuel: u64) -> Result<Vec<i64>, Trap> {
        let Some(store) = self.store.as_mut() else {
            return Err(self.suspended());
        };
        let func = self
            .instance
            .get_func(&mut *store, export)
            .ok_or_else(|| Trap::new(format!("no export `{export}`")))?;
        let ty = func.ty(&*store);
        let params: Vec<Val> = ty.params().zip(args).map(|(t, x)| to_val(&t, *x)).collect();
        let mut results: Vec<Val> = ty.results().map(|t| to_val(&t, 0)).collect();
        store
            .set_fuel(fuel)
            .and_then(|()| store.fuel_async_yield_interval(None))
            .map_err(|e| trap(&e))?;
        self.granted = fuel;
        store.data_mut().nested = true;
        let called = poll_to_end(func.call_async(&mut *store, &params, &mut results));
        store.data_mut().nested = false;
        self.settle_fuel();
        called.map_err(|e| trap(&e))?;
        Ok(results.iter().map(val).collect())
    }

    fn memory(&mut self) -> &mut dyn GuestMemory {
        self
    }

    fn memory_size(&self) -> u64 {
        self.store
            .as_ref()
            .map_or(0, |s| self.memory.data(s).len() as u64)
    }

    fn abandon(&mut self) {
        // Dropping the call would drop the store inside it, so run it out instead: it ends at
        // the store's fuel budget (a trap) at the latest; deferred imports are refused.
        let refused = Answer {
            code: i64::from(crate::abi::call_code::STUBBED),
            delivery: None,
        };
        while self.running.is_some() {
            match self.poll() {
                Ok(Slice::Deferred(_)) => {
                    let id = self.id;
                    let answer = refused.clone();
                    DEFERRED.with(|d| d.borrow_mut().entry(id).or_default().answer = Some(answer));
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let id = self.id;
        DEFERRED.with(|d| d.borrow_mut().remove(&id));
    }

    fn fuel_consumed(&self) -> u64 {
        match &self.store {
            Some(s) => self.consumed + self.granted.saturating_sub(s.get_fuel().unwrap_or(0)),
            None => self.consumed,
        }
    }

    fn global(&mut self, name: &str) -> Option<GlobalValue> {
        let store = self.store.as_mut()?;
        let global = self.instance.get_global(&mut *store, name)?;
        match global.get(&mut *store) {
            Val::I32(x) => Some(GlobalValue::I32(x)),
            Val::I64(x) => Some(GlobalValue::I64(x)),
            Val::F32(x) => Some(GlobalValue::F32(x)),
            Val::F64(x) => Some(GlobalValue::F64(x)),
            _ => None,
        }
    }

    fn set_global(&mut self, name: &str, value: GlobalValue) -> Result<(), Trap> {
        let Some(store) = self.store.as_mut() else {
            return Err(self.suspended());
        };
        let global = self
            .instance
            .get_global(&mut *store, name)
            .ok_or_else(|| Trap::new(format!("no global `{name}`")))?;
        let v = match value {
            GlobalValue::I32(x) => Val::I32(x),
            GlobalValue::I64(x) => Val::I64(x),
            GlobalValue::F32(x) => Val::F32(x),
            GlobalValue::F64(x) => Val::F64(x),
        };
        global
            .set(&mut *store, v)
            .map_err(|e| Trap::new(format!("setting global `{name}`: {e:#}")))
    }

    fn grow_memory(&mut self, bytes: u64) -> Result<(), Trap> {
        const PAGE: u64 = 65_536;
        let have = self.memory_size();
        if have >= bytes {
            return Ok(());
        }
        let Some(store) = self.store.as_mut() else {
            return Err(self.suspended());
        };
        let pages = (bytes - have).div_ceil(PAGE);
        self.memory
            .grow(&mut *store, pages)
            .map(|_| ())
            .map_err(|e| Trap::new(format!("growing memory to {bytes} bytes: {e:#}")))
    }
}

impl GuestMemory for WasmtimeInstance {
    fn size(&self) -> u64 {
        self.memory_size()
    }

    fn read(&self, ptr: u32, len: u32) -> Result<Vec<u8>, MemoryError> {
        match &self.store {
            Some(s) => copy_out(self.memory.data(s), ptr, len),
            None => Err(MemoryError { ptr, len, size: 0 }),
        }
    }

    fn write(&mut self, ptr: u32, bytes: &[u8]) -> Result<(), MemoryError> {
        match &mut self.store {
            Some(s) => copy_in(self.memory.data_mut(s), ptr, bytes),
            None => Err(MemoryError {
                ptr,
                len: bytes.len() as u32,
                size: 0,
            }),
        }
    }
}
