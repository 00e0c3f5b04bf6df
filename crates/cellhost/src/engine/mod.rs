//! The engine seam: what the cell host needs from a WASM engine. An export runs in fuel slices
//! (so the caller can yield between them, preempting a cell mid-step) and a host import may
//! *defer*: the call suspends and the host resumes it with the import's result later (a sibling
//! call to a busy cell parks the caller instead of blocking a thread). wasmi implements it in
//! simulation; wasmtime (async + `fuel_async_yield_interval`) implements it in hardware runs.

pub mod wasmi;
#[cfg(feature = "wasmtime")]
pub mod wasmtime;

use crate::abi::ValType;
use std::any::Any;
use std::fmt;
use std::rc::Rc;

/// What a host import does when called.
pub enum HostOutcome {
    /// Return this value (ignored for imports without a result).
    Return(i64),
    /// Suspend the call; the host resumes it with the result once the request is served.
    /// Only where [`GuestMemory::may_suspend`] says so.
    Defer(Box<dyn Any>),
    /// End the running export and the instance with this exit code (WASI `proc_exit`).
    Exit(u32),
}

/// Access to the calling cell's linear memory, bounds-checked.
pub trait GuestMemory {
    fn size(&self) -> u64;
    fn read(&self, ptr: u32, len: u32) -> Result<Vec<u8>, MemoryError>;
    fn write(&mut self, ptr: u32, data: &[u8]) -> Result<(), MemoryError>;
    /// Whether the running call may suspend (defer an import): true in an export the host
    /// started, false in a call the host runs to completion (its `pulp_alloc` or `pulp_free`,
    /// or the caller's `pulp_alloc` receiving a sibling's response), where an import must
    /// answer at once.
    fn may_suspend(&self) -> bool {
        true
    }
}

pub type ImportFn = Rc<dyn Fn(&mut dyn GuestMemory, &[i64]) -> HostOutcome>;

/// An engine-neutral host import: a function in module `pulp` (the capabilities) or
/// `wasi_snapshot_preview1` (the WASI layer).
#[derive(Clone)]
pub struct Import {
    pub module: &'static str,
    pub name: &'static str,
    pub params: &'static [ValType],
    /// At most one result.
    pub results: &'static [ValType],
    pub run: ImportFn,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryError {
    pub ptr: u32,
    pub len: u32,
    pub size: u64,
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "guest memory access at {}..{} outside the memory of {} bytes",
            self.ptr,
            u64::from(self.ptr) + u64::from(self.len),
            self.size
        )
    }
}

/// Why a module could not be loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadError {
    InvalidWasm {
        message: String,
    },
    MissingExport {
        name: &'static str,
    },
    WrongSignature {
        name: String,
        expected: String,
        found: String,
    },
    UnknownImport {
        module: String,
        name: String,
    },
    Link {
        message: String,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::InvalidWasm { message } => write!(f, "invalid WASM module: {message}"),
            LoadError::MissingExport { name } => write!(f, "module does not export `{name}`"),
            LoadError::WrongSignature {
                name,
                expected,
                found,
            } => write!(
                f,
                "export `{name}` has signature {found}, expected {expected}"
            ),
            LoadError::UnknownImport { module, name } => {
                write!(f, "module imports unknown `{module}.{name}`")
            }
            LoadError::Link { message } => write!(f, "module does not link: {message}"),
        }
    }
}

impl std::error::Error for LoadError {}

/// The answer to a deferred import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The import's result (when there is a delivery, the result if the delivery succeeds).
    pub code: i64,
    pub delivery: Option<Delivery>,
}

/// Bytes to hand the suspended caller through its own `pulp_alloc`. The engine delivers them,
/// not the host: an engine may not let anyone else touch a suspended instance (wasmtime's store
/// belongs to the suspended call).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub bytes: Vec<u8>,
    /// Where the caller wants the buffer's pointer and length (u32 LE each).
    pub ptr_out: u32,
    pub len_out: u32,
    /// Fuel for the caller's `pulp_alloc`.
    pub alloc_fuel: u64,
    /// The import's result if `pulp_alloc` fails, or if writing fails.
    pub alloc_failed: i64,
    pub write_failed: i64,
}

impl Delivery {
    /// Delivers through `alloc` and `memory`; returns the import's result.
    pub fn deliver(
        &self,
        code: i64,
        alloc: impl FnOnce(u32) -> Option<u32>,
        memory: &mut dyn GuestMemory,
    ) -> i64 {
        let Ok(len) = u32::try_from(self.bytes.len()) else {
            return self.alloc_failed;
        };
        let ptr = if len == 0 {
            0
        } else {
            match alloc(len) {
                Some(p) if p != 0 => p,
                _ => return self.alloc_failed,
            }
        };
        let written = memory
            .write(ptr, &self.bytes)
            .and_then(|()| memory.write(self.ptr_out, &ptr.to_le_bytes()))
            .and_then(|()| memory.write(self.len_out, &len.to_le_bytes()));
        match written {
            Ok(()) => code,
            Err(_) => self.write_failed,
        }
    }
}

/// How a running export stopped.
pub enum Slice {
    /// Returned, with its results.
    Finished(Vec<i64>),
    /// Used up this slice's fuel; resume with at least `required` (one instruction, such as
    /// `memory.grow`, may cost more than a slice).
    OutOfFuel { required: u64 },
    /// A host import deferred; resume with its result.
    Deferred(Box<dyn Any>),
}

/// A trap or engine failure while running an export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trap {
    pub message: String,
    /// The engine's own fuel ran out (the host reports it as its fuel budget).
    pub out_of_fuel: bool,
    /// The cell called WASI `proc_exit` with this code.
    pub exit_code: Option<u32>,
}

impl Trap {
    pub fn new(message: impl Into<String>) -> Self {
        Trap {
            message: message.into(),
            out_of_fuel: false,
            exit_code: None,
        }
    }

    pub fn exit(code: u32) -> Self {
        Trap {
            message: format!("proc_exit({code})"),
            out_of_fuel: false,
            exit_code: Some(code),
        }
    }
}

/// The value of a global, by its bits (floats as their bit patterns, so equality is exact).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GlobalValue {
    I32(i32),
    I64(i64),
    F32(u32),
    F64(u64),
}

impl fmt::Display for Trap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "trap: {}", self.message)
    }
}

/// Limits on one instance.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest linear memory, in bytes.
    pub max_memory: u64,
    /// Fuel one entry may use in all (the host enforces it; an engine that cannot hand a
    /// suspended call back without finishing it, wasmtime, also sets it as the store's fuel).
    pub fuel_per_entry: u64,
}

pub trait Engine: 'static {
    /// A compiled module; it keeps the engine that compiled it, and instances of it are made
    /// with that engine (a module may be kept and instantiated by later hosts).
    type Module: Clone + 'static;
    type Instance: Instance;

    /// Compiles and validates a module, and checks the Pulp exports' presence and signatures.
    fn compile(&self, wasm: &[u8]) -> Result<Self::Module, LoadError>;
    /// Instantiates with exactly these imports (module `pulp`); runs no code.
    fn instantiate(
        &self,
        module: &Self::Module,
        imports: &[Import],
        limits: Limits,
    ) -> Result<Self::Instance, LoadError>;
}

pub trait Instance {
    fn has_export(&self, name: &str) -> bool;
    /// Starts an export with `fuel` for its first slice. One export runs at a time: starting
    /// another while one is suspended is an error.
    fn start(&mut self, export: &str, args: &[i64], fuel: u64) -> Result<Slice, Trap>;
    /// Continues a suspended export after `OutOfFuel`.
    fn resume_fuel(&mut self, fuel: u64) -> Result<Slice, Trap>;
    /// Continues a suspended export after `Deferred`, with the import's answer (delivering its
    /// bytes first, if any).
    fn resume_host(&mut self, answer: Answer, fuel: u64) -> Result<Slice, Trap>;
    /// Runs an export to completion within `fuel` (host-initiated `pulp_alloc`, `pulp_free`,
    /// probes). Only between entries: an error while an export is suspended.
    fn call_now(&mut self, export: &str, args: &[i64], fuel: u64) -> Result<Vec<i64>, Trap>;
    /// The instance's memory (between entries; accesses fail while an export is suspended).
    fn memory(&mut self) -> &mut dyn GuestMemory;
    fn memory_size(&self) -> u64;
    /// Ends a suspended export (the host gave up on it: its fuel budget is spent). The host
    /// enters such an instance no more: its state is whatever the export left half-written.
    fn abandon(&mut self);
    /// Fuel this instance has used since it was made, over every call.
    fn fuel_consumed(&self) -> u64 {
        0
    }
    /// The value of an exported global (between entries).
    fn global(&mut self, _name: &str) -> Option<GlobalValue> {
        None
    }
    /// Sets an exported mutable global (between entries).
    fn set_global(&mut self, name: &str, _value: GlobalValue) -> Result<(), Trap> {
        Err(Trap::new(format!("cannot set global `{name}`")))
    }
    /// Grows the memory to at least `bytes` (between entries).
    fn grow_memory(&mut self, bytes: u64) -> Result<(), Trap> {
        if self.memory_size() >= bytes {
            return Ok(());
        }
        Err(Trap::new("this engine cannot grow memory from the host"))
    }
}

pub(crate) fn signature(params: &[ValType], results: &[ValType]) -> String {
    let list = |v: &[ValType]| {
        v.iter()
            .map(|t| match t {
                ValType::I32 => "i32",
                ValType::I64 => "i64",
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("({}) -> ({})", list(params), list(results))
}

/// What an engine reports about one export, for the Pulp export checks.
pub(crate) enum ExportShape {
    Memory,
    /// A function; `None` where a type is not i32/i64.
    Func {
        params: Option<Vec<ValType>>,
        results: Option<Vec<ValType>>,
        /// The engine's own rendering of the signature, for the error.
        shown: String,
    },
    Other,
}

/// Checks a module's exports against the Pulp ABI: a memory, the required functions, and the
/// optional ones where present, each with its exact signature.
pub(crate) fn check_pulp_exports(
    export: impl Fn(&str) -> Option<ExportShape>,
) -> Result<(), LoadError> {
    if !matches!(export(crate::abi::MEMORY), Some(ExportShape::Memory)) {
        return Err(LoadError::MissingExport {
            name: crate::abi::MEMORY,
        });
    }
    let required = crate::abi::REQUIRED_EXPORTS.iter().map(|e| (e, true));
    let optional = crate::abi::OPTIONAL_EXPORTS.iter().map(|e| (e, false));
    for ((name, params, results), must) in required.chain(optional) {
        let expected = signature(params, results);
        match export(name) {
            None if must => return Err(LoadError::MissingExport { name }),
            None => {}
            Some(ExportShape::Func {
                params: p,
                results: r,
                ..
            }) if p.as_deref() == Some(*params) && r.as_deref() == Some(*results) => {}
            Some(ExportShape::Func { shown, .. }) => {
                return Err(LoadError::WrongSignature {
                    name: (*name).into(),
                    expected,
                    found: shown,
                });
            }
            Some(_) => {
                return Err(LoadError::WrongSignature {
                    name: (*name).into(),
                    expected,
                    found: "not a function".into(),
                });
            }
        }
    }
    Ok(())
}

/// `len` bytes at `ptr` of linear memory `data`, bounds-checked.
pub(crate) fn copy_out(data: &[u8], ptr: u32, len: u32) -> Result<Vec<u8>, MemoryError> {
    let (start, end) = (ptr as usize, ptr as usize + len as usize);
    data.get(start..end).map(<[u8]>::to_vec).ok_or(MemoryError {
        ptr,
        len,
        size: data.len() as u64,
    })
}

/// Writes `bytes` at `ptr` of linear memory `data`, bounds-checked.
pub(crate) fn copy_in(data: &mut [u8], ptr: u32, bytes: &[u8]) -> Result<(), MemoryError> {
    let err = MemoryError {
        ptr,
        len: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
        size: data.len() as u64,
    };
    let start = ptr as usize;
    let end = start.checked_add(bytes.len()).ok_or(err)?;
    data.get_mut(start..end).ok_or(err)?.copy_from_slice(bytes);
    Ok(())
}
