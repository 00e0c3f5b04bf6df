//! The simulation engine: wasmi 2.0.0 (pinned: fuel costs are wasmi's own IR costs and part of
//! every replay), eager compilation (lazy compilation charges fuel for translation), fuel
//! metering with resumable out-of-fuel, and deferred host imports as resumable host traps.

use super::{
    Answer, Engine, ExportShape, GlobalValue, GuestMemory, HostOutcome, Import, Instance, Limits,
    LoadError, MemoryError, Slice, Trap, check_pulp_exports, copy_in, copy_out,
};
use crate::abi::{self, ValType};
use std::any::Any;
use std::fmt;
use wasmi::{
    Caller, CompilationMode, Config, Error, ExternType, Func, FuncType, Memory, Module,
    ResumableCall, ResumableCallHostTrap, ResumableCallOutOfFuel, Store, StoreLimits,
    StoreLimitsBuilder, TrapCode, Val,
};

pub struct WasmiEngine {
    engine: wasmi::Engine,
}

impl Default for WasmiEngine {
    fn default() -> Self {
        let mut config = Config::default();
        config.consume_fuel(true);
        config.compilation_mode(CompilationMode::Eager);
        Self {
            engine: wasmi::Engine::new(&config),
        }
    }
}

#[derive(Clone)]
pub struct WasmiModule(Module);

/// Marks a host trap that is a deferred import, not a failure.
#[derive(Debug)]
struct Deferred;

impl fmt::Display for Deferred {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deferred host import")
    }
}

impl wasmi::errors::HostError for Deferred {}

/// A host trap that is WASI `proc_exit`.
#[derive(Debug)]
struct ProcExit(u32);

impl fmt::Display for ProcExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "proc_exit({})", self.0)
    }
}

impl wasmi::errors::HostError for ProcExit {}

struct State {
    limits: StoreLimits,
    imports: Vec<Import>,
    deferred: Option<Box<dyn Any>>,
    /// A call the host runs to completion is running: imports may not defer.
    nested: bool,
}

enum Suspended {
    Fuel(ResumableCallOutOfFuel),
    Host(ResumableCallHostTrap),
}

pub struct WasmiInstance {
    store: Store<State>,
    instance: wasmi::Instance,
    memory: Memory,
    suspended: Option<(Suspended, usize)>,
    /// Fuel used by finished slices and calls.
    consumed: u64,
    /// Fuel given to the slice or call now running (what it has not used is still in the
    /// store).
    granted: u64,
}

fn to_wasmi(t: ValType) -> wasmi::ValType {
    match t {
        ValType::I32 => wasmi::ValType::I32,
        ValType::I64 => wasmi::ValType::I64,
    }
}

fn from_wasmi(types: &[wasmi::ValType]) -> Option<Vec<ValType>> {
    types
        .iter()
        .map(|t| match t {
            wasmi::ValType::I32 => Some(ValType::I32),
            wasmi::ValType::I64 => Some(ValType::I64),
            _ => None,
        })
        .collect()
}

fn describe(ty: &FuncType) -> String {
    let list = |v: &[wasmi::ValType]| {
        v.iter()
            .map(|t| format!("{t:?}").to_lowercase())
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("({}) -> ({})", list(ty.params()), list(ty.results()))
}

fn val(v: &Val) -> i64 {
    match v {
        Val::I32(x) => i64::from(*x),
        Val::I64(x) => *x,
        _ => 0,
    }
}

fn to_val(t: wasmi::ValType, x: i64) -> Val {
    match t {
        wasmi::ValType::I64 => Val::I64(x),
        _ => Val::I32(x as i32),
    }
}

fn trap(e: &Error) -> Trap {
    if let Some(ProcExit(code)) = e.downcast_ref::<ProcExit>() {
        return Trap::exit(*code);
    }
    Trap {
        message: e.to_string(),
        out_of_fuel: e.as_trap_code() == Some(TrapCode::OutOfFuel),
        exit_code: None,
    }
}

impl Engine for WasmiEngine {
    type Module = WasmiModule;
    type Instance = WasmiInstance;

    fn compile(&self, wasm: &[u8]) -> Result<WasmiModule, LoadError> {
        let module = Module::new(&self.engine, wasm).map_err(|e| LoadError::InvalidWasm {
            message: e.to_string(),
        })?;
        check_pulp_exports(|name| {
            let export = module.exports().find(|e| e.name() == name)?;
            Some(match export.ty() {
                ExternType::Memory(_) => ExportShape::Memory,
                ExternType::Func(ty) => ExportShape::Func {
                    params: from_wasmi(ty.params()),
                    results: from_wasmi(ty.results()),
                    shown: describe(ty),
                },
                _ => ExportShape::Other,
            })
        })?;
        Ok(WasmiModule(module))
    }

    fn instantiate(
        &self,
        module: &WasmiModule,
        imports: &[Import],
        limits: Limits,
    ) -> Result<WasmiInstance, LoadError> {
        let state = State {
            limits: StoreLimitsBuilder::new()
                .memory_size(usize::try_from(limits.max_memory).unwrap_or(usize::MAX))
                .instances(1)
                .build(),
            imports: imports.to_vec(),
            deferred: None,
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
            let spec = &imports[index];
            let ty = FuncType::new(
                spec.params.iter().copied().map(to_wasmi),
                spec.results.iter().copied().map(to_wasmi),
            );
            let func = Func::new(&mut store, ty, move |caller, args, results| {
                host_call(caller, index, args, results)
            });
            externs.push(wasmi::Extern::Func(func));
        }
        let instance =
            wasmi::Instance::new(&mut store, &module.0, &externs).map_err(|e| LoadError::Link {
                message: e.to_string(),
            })?;
        let memory = instance
            .get_memory(&store, abi::MEMORY)
            .ok_or(LoadError::MissingExport { name: abi::MEMORY })?;
        Ok(WasmiInstance {
            store,
            instance,
            memory,
            suspended: None,
            consumed: 0,
            granted: 0,
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
        let Some(memory) = self.memory else {
            return Err(MemoryError {
                ptr,
                len: bytes.len() as u32,
                size: 0,
            });
        };
        copy_in(memory.data_mut(&mut *self.caller), ptr, bytes)
    }

    fn may_suspend(&self) -> bool {
        !self.caller.data().nested
    }
}

fn host_call(
    mut caller: Caller<'_, State>,
    index: usize,
    args: &[Val],
    results: &mut [Val],
) -> Result<(), Error> {
    let run = caller.data().imports[index].run.clone();
    let memory = caller
        .get_export(abi::MEMORY)
        .and_then(wasmi::Extern::into_memory);
    let args: Vec<i64> = args.iter().map(val).collect();
    let outcome = {
        let mut mem = CallerMemory {
            caller: &mut caller,
            memory,
        };
        run(&mut mem, &args)
    };
    match outcome {
        HostOutcome::Return(x) => {
            if let Some(slot) = results.first_mut() {
                *slot = to_val(slot.ty(), x);
            }
            Ok(())
        }
        HostOutcome::Defer(request) => {
            caller.data_mut().deferred = Some(request);
            Err(Error::host(Deferred))
        }
        HostOutcome::Exit(code) => Err(Error::host(ProcExit(code))),
    }
}

impl WasmiInstance {
    fn outcome(
        &mut self,
        call: Result<ResumableCall, Error>,
        outputs: Vec<Val>,
    ) -> Result<Slice, Trap> {
        let n = outputs.len();
        match call {
            Ok(ResumableCall::Finished) => Ok(Slice::Finished(outputs.iter().map(val).collect())),
            Ok(ResumableCall::OutOfFuel(c)) => {
                let required = c.required_fuel();
                self.suspended = Some((Suspended::Fuel(c), n));
                Ok(Slice::OutOfFuel { required })
            }
            Ok(ResumableCall::HostTrap(c)) => {
                if c.host_error().downcast_ref::<Deferred>().is_none() {
                    self.suspended = None;
                    return Err(trap(c.host_error()));
                }
                match self.store.data_mut().deferred.take() {
                    Some(request) => {
                        self.suspended = Some((Suspended::Host(c), n));
                        Ok(Slice::Deferred(request))
                    }
                    None => Err(Trap::new("deferred import without a request")),
                }
            }
            Err(e) => Err(trap(&e)),
        }
    }

    /// Starts a slice or call with `fuel`, first counting what the last one used.
    fn set_fuel(&mut self, fuel: u64) -> Result<(), Trap> {
        self.settle_fuel();
        self.granted = fuel;
        self.store.set_fuel(fuel).map_err(|e| trap(&e))
    }

    /// Adds what the running slice has used so far to `consumed`.
    fn settle_fuel(&mut self) {
        let left = self.store.get_fuel().unwrap_or(0);
        self.consumed += self.granted.saturating_sub(left);
        self.granted = left;
    }

    /// Runs `f` as a call the host runs to completion: imports may not defer in it.
    fn nested<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        let outer = std::mem::replace(&mut self.store.data_mut().nested, true);
        let r = f(self);
        self.store.data_mut().nested = outer;
        r
    }

    fn result_slots(&self, func: &Func) -> Vec<Val> {
        func.ty(&self.store)
            .results()
            .iter()
            .map(|t| Val::default_for_ty(*t))
            .collect()
    }

    fn func(&self, export: &str) -> Result<Func, Trap> {
        self.instance
            .get_func(&self.store, export)
            .ok_or_else(|| Trap::new(format!("no export `{export}`")))
    }

    fn args_for(&self, func: &Func, args: &[i64]) -> Vec<Val> {
        func.ty(&self.store)
            .params()
            .iter()
            .zip(args)
            .map(|(t, x)| to_val(*t, *x))
            .collect()
    }
}

impl Instance for WasmiInstance {
    fn has_export(&self, name: &str) -> bool {
        self.instance.get_func(&self.store, name).is_some()
    }

    fn start(&mut self, export: &str, args: &[i64], fuel: u64) -> Result<Slice, Trap> {
        if self.suspended.is_some() {
            return Err(Trap::new(format!(
                "`{export}` started while another export is suspended"
            )));
        }
        let func = self.func(export)?;
        let inputs = self.args_for(&func, args);
        let mut outputs = self.result_slots(&func);
        self.set_fuel(fuel)?;
        let call = func.call_resumable(&mut self.store, &inputs, &mut outputs);
        self.outcome(call, outputs)
    }

    fn resume_fuel(&mut self, fuel: u64) -> Result<Slice, Trap> {
        let Some((Suspended::Fuel(c), n)) = self.suspended.take() else {
            return Err(Trap::new("nothing is waiting for fuel"));
        };
        self.set_fuel(fuel)?;
        let mut outputs = vec![Val::I32(0); n];
        let call = c.resume(&mut self.store, &mut outputs);
        self.outcome(call, outputs)
    }

    fn resume_host(&mut self, answer: Answer, fuel: u64) -> Result<Slice, Trap> {
        let Some((Suspended::Host(c), n)) = self.suspended.take() else {
            return Err(Trap::new("nothing is waiting for a host result"));
        };
        // wasmi lets us run the caller's allocator while the export is suspended.
        let result = match &answer.delivery {
            None => answer.code,
            Some(d) => {
                let alloc = self.func(abi::ALLOC).ok();
                let ptr = if d.bytes.is_empty() {
                    Some(0)
                } else {
                    let len = d.bytes.len() as u32;
                    self.nested(|me| {
                        let f = alloc?;
                        let mut out = [Val::I32(0)];
                        me.set_fuel(d.alloc_fuel).ok()?;
                        f.call(&mut me.store, &[Val::I32(len as i32)], &mut out)
                            .ok()?;
                        Some(val(&out[0]) as u32)
                    })
                };
                d.deliver(answer.code, |_| ptr, self)
            }
        };
        let ty = c.host_func().ty(&self.store);
        let inputs: Vec<Val> = ty.results().iter().map(|t| to_val(*t, result)).collect();
        self.set_fuel(fuel)?;
        let mut outputs = vec![Val::I32(0); n];
        let call = c.resume(&mut self.store, &inputs, &mut outputs);
        self.outcome(call, outputs)
    }

    fn call_now(&mut self, export: &str, args: &[i64], fuel: u64) -> Result<Vec<i64>, Trap> {
        let func = self.func(export)?;
        let inputs = self.args_for(&func, args);
        let mut outputs = self.result_slots(&func);
        self.set_fuel(fuel)?;
        self.nested(|me| func.call(&mut me.store, &inputs, &mut outputs))
            .map_err(|e| trap(&e))?;
        self.settle_fuel();
        Ok(outputs.iter().map(val).collect())
    }

    fn memory(&mut self) -> &mut dyn GuestMemory {
        self
    }

    fn memory_size(&self) -> u64 {
        self.memory.data(&self.store).len() as u64
    }

    fn abandon(&mut self) {
        self.suspended = None;
    }

    fn fuel_consumed(&self) -> u64 {
        let left = self.store.get_fuel().unwrap_or(0);
        self.consumed + self.granted.saturating_sub(left)
    }

    fn global(&mut self, name: &str) -> Option<GlobalValue> {
        let global = self.instance.get_global(&self.store, name)?;
        match global.get(&self.store) {
            Val::I32(x) => Some(GlobalValue::I32(x)),
            Val::I64(x) => Some(GlobalValue::I64(x)),
            Val::F32(x) => Some(GlobalValue::F32(x.to_bits())),
            Val::F64(x) => Some(GlobalValue::F64(x.to_bits())),
            _ => None,
        }
    }

    fn set_global(&mut self, name: &str, value: GlobalValue) -> Result<(), Trap> {
        let global = self
            .instance
            .get_global(&self.store, name)
            .ok_or_else(|| Trap::new(format!("no global `{name}`")))?;
        let v = match value {
            GlobalValue::I32(x) => Val::I32(x),
            GlobalValue::I64(x) => Val::I64(x),
            GlobalValue::F32(x) => Val::F32(wasmi::F32::from_bits(x)),
            GlobalValue::F64(x) => Val::F64(wasmi::F64::from_bits(x)),
        };
        global
            .set(&mut self.store, v)
            .map_err(|e| Trap::new(format!("setting global `{name}`: {e}")))
    }

    fn grow_memory(&mut self, bytes: u64) -> Result<(), Trap> {
        const PAGE: u64 = 65_536;
        let have = self.memory_size();
        if have >= bytes {
            return Ok(());
        }
        let pages = (bytes - have).div_ceil(PAGE);
        self.memory
            .grow(&mut self.store, pages)
            .map(|_| ())
            .map_err(|e| Trap::new(format!("growing memory to {bytes} bytes: {e}")))
    }
}

impl GuestMemory for WasmiInstance {
    fn size(&self) -> u64 {
        self.memory_size()
    }

    fn read(&self, ptr: u32, len: u32) -> Result<Vec<u8>, MemoryError> {
        copy_out(self.memory.data(&self.store), ptr, len)
    }

    fn write(&mut self, ptr: u32, bytes: &[u8]) -> Result<(), MemoryError> {
        copy_in(self.memory.data_mut(&mut self.store), ptr, bytes)
    }
}
