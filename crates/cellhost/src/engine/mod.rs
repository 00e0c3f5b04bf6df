//! The engine seam: what the cell host needs from a WASM engine. An export runs in fuel slices
//! (so the caller can yield between them, preempting a cell mid-step) and a host import may
//! *defer*: the call suspends and the host resumes it with the import's result later (a sibling
//! call to a busy cell parks the caller instead of blocking a thread). wasmi implements it in
//! simulation; wasmtime (async + `fuel_async_yield_interval`) implements it in hardware runs.

pub mod wasmi;

use crate::abi::ValType;
use std::any::Any;
use std::fmt;
use std::rc::Rc;

/// What a host import does when called.
pub enum HostOutcome {
    /// Return this value (ignored for imports without a result).
    Return(i64),
    /// Suspend the call; the host resumes it with the result once the request is served.
    Defer(Box<dyn Any>),
}

/// Access to the calling cell's linear memory, bounds-checked.
pub trait GuestMemory {
    fn size(&self) -> u64;
    fn read(&self, ptr: u32, len: u32) -> Result<Vec<u8>, MemoryError>;
    fn write(&mut self, ptr: u32, data: &[u8]) -> Result<(), MemoryError>;
}

pub type ImportFn = Rc<dyn Fn(&mut dyn GuestMemory, &[i64]) -> HostOutcome>;

/// An engine-neutral host import in module `pulp`.
#[derive(Clone)]
pub struct Import {
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
}

pub trait Engine: 'static {
    type Module: Clone;
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
    /// Continues a suspended export after `Deferred`, with the import's result.
    fn resume_host(&mut self, result: i64, fuel: u64) -> Result<Slice, Trap>;
    /// Runs an export to completion within `fuel` (for host-initiated `pulp_alloc`/`pulp_free`,
    /// allowed while another export is suspended).
    fn call_now(&mut self, export: &str, args: &[i64], fuel: u64) -> Result<Vec<i64>, Trap>;
    fn memory(&mut self) -> &mut dyn GuestMemory;
    fn memory_size(&self) -> u64;
    /// Drops a suspended export, if any.
    fn abandon(&mut self);
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
