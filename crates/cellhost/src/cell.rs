//! One loaded cell: its manifest, its instance, where it is in its lifecycle, and the lock that
//! serializes every entry into it (init, step, sibling call, shutdown, close).

use crate::capability::BindError;
use crate::engine::{Engine, LoadError, MemoryError, Trap};
use crate::manifest::{CellSpec, ManifestError, Restart};
use crate::snapshot::ImageKey;
use crate::wasi::WasiCtx;
use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;
use tokio::sync::Mutex;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    /// Instantiated (its start function run); `pulp_init` not yet run (or it returned
    /// non-zero).
    Loaded,
    Ready,
    /// Its code trapped, spent its fuel or time budget, or called `proc_exit`: the instance
    /// is gone (its state was half-written) and no entry reaches it, unless the restart
    /// policy makes a new one.
    Failed,
    ShutDown,
    Closed,
}

/// How a cell failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    Trap {
        export: String,
        message: String,
    },
    Fuel {
        export: String,
        fuel: u64,
    },
    Timeout {
        export: String,
        ms: u64,
    },
    Exit {
        export: String,
        code: u32,
    },
    /// A restart's `pulp_init` returned this code.
    InitFailed {
        code: i64,
    },
}

impl Failure {
    /// The exit code, if the cell ended with `proc_exit`.
    pub fn exit_code(&self) -> Option<u32> {
        match self {
            Failure::Exit { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Trap { export, message } => write!(f, "`{export}` trapped: {message}"),
            Failure::Fuel { export, fuel } => {
                write!(f, "`{export}` ran past its budget of {fuel} fuel")
            }
            Failure::Timeout { export, ms } => {
                write!(f, "`{export}` ran past its call timeout of {ms} ms")
            }
            Failure::Exit { export, code } => {
                write!(f, "`{export}` ended the cell with proc_exit({code})")
            }
            Failure::InitFailed { code } => write!(f, "pulp_init returned {code} on restart"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CellError {
    Manifest(ManifestError),
    Load(LoadError),
    Bind(BindError),
    Io {
        path: String,
        message: String,
    },
    DuplicateCell {
        name: String,
    },
    /// The cell's start function failed: the cell does not load.
    StartFailed {
        export: &'static str,
        reason: String,
    },
    /// The cell trapped; it has failed.
    Trap(Trap),
    /// An export ran past the fuel budget of one entry; the cell has failed.
    FuelExhausted {
        export: &'static str,
        fuel: u64,
    },
    /// An export ran past the call timeout (in the host's time); the cell has failed.
    Timeout {
        export: &'static str,
        ms: u64,
    },
    /// The cell called `proc_exit(code)`; it has failed with that exit code.
    Exited {
        code: u32,
    },
    /// The cell failed in an earlier entry and takes no more.
    Failed(Failure),
    InitFailed {
        code: i64,
    },
    ShutdownFailed {
        code: i64,
    },
    NotInitialized,
    ShutDown,
    Closed,
    /// `pulp_alloc` returned 0 or a buffer outside memory.
    AllocFailed {
        size: u32,
    },
    BadPointer(MemoryError),
    /// The target's `pulp_on_call` failed with this code, or it has none.
    CallFailed {
        code: u32,
    },
    /// The call would close a cycle of cells waiting on each other.
    Reentrant {
        chain: Vec<String>,
    },
}

impl fmt::Display for CellError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CellError::Manifest(e) => e.fmt(f),
            CellError::Load(e) => e.fmt(f),
            CellError::Bind(e) => e.fmt(f),
            CellError::Io { path, message } => write!(f, "reading {path}: {message}"),
            CellError::DuplicateCell { name } => write!(f, "a cell named `{name}` is loaded"),
            CellError::StartFailed { export, reason } => {
                write!(f, "start function `{export}` failed: {reason}")
            }
            CellError::Trap(t) => t.fmt(f),
            CellError::FuelExhausted { export, fuel } => {
                write!(f, "`{export}` ran past its budget of {fuel} fuel")
            }
            CellError::Timeout { export, ms } => {
                write!(f, "`{export}` ran past its call timeout of {ms} ms")
            }
            CellError::Exited { code } => write!(f, "the cell called proc_exit({code})"),
            CellError::Failed(failure) => write!(f, "the cell has failed: {failure}"),
            CellError::InitFailed { code } => write!(f, "pulp_init returned {code}"),
            CellError::ShutdownFailed { code } => write!(f, "pulp_shutdown returned {code}"),
            CellError::NotInitialized => f.write_str("the cell is not initialised"),
            CellError::ShutDown => f.write_str("the cell is shut down"),
            CellError::Closed => f.write_str("the cell is closed"),
            CellError::AllocFailed { size } => {
                write!(f, "pulp_alloc({size}) returned no usable buffer")
            }
            CellError::BadPointer(e) => e.fmt(f),
            CellError::CallFailed { code } => write!(f, "pulp_on_call failed with code {code}"),
            CellError::Reentrant { chain } => {
                write!(
                    f,
                    "re-entrant call: {} is already waiting",
                    chain.join(" -> ")
                )
            }
        }
    }
}

impl std::error::Error for CellError {}

impl From<Trap> for CellError {
    fn from(t: Trap) -> Self {
        CellError::Trap(t)
    }
}

impl From<MemoryError> for CellError {
    fn from(e: MemoryError) -> Self {
        CellError::BadPointer(e)
    }
}

/// The limits one cell runs under: the manifest's where it sets them, else the host's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CellLimits {
    /// Largest linear memory, in bytes.
    pub max_memory: u64,
    pub start_fuel: u64,
    pub entry_fuel: u64,
    pub alloc_fuel: u64,
    /// The bound on one entry in the host's time, if any.
    pub call_timeout_ns: Option<u64>,
    pub restart: Restart,
}

/// Restarts within the current window (Pulp's breaker: at most 5 in 30 s).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Restarts {
    pub count: u32,
    pub window_start_ns: u64,
}

/// A compiled module and what making an instance of it needs.
pub(crate) struct Prepared<E: Engine> {
    pub module: E::Module,
    /// The start function, if the module exports one.
    pub start: Option<&'static str>,
    /// The key of its start image and the exported globals an image holds; `None` when its
    /// instances run the start function themselves.
    pub image: Option<(ImageKey, Vec<String>)>,
}

pub struct Cell<E: Engine> {
    pub(crate) spec: CellSpec,
    /// The compiled module and how to start an instance of it (kept for restarts).
    pub(crate) prepared: Rc<Prepared<E>>,
    pub(crate) limits: CellLimits,
    /// Dropped at close, or when the cell fails.
    pub(crate) instance: RefCell<Option<E::Instance>>,
    /// The instance's WASI context (to flush its output at the end of an entry).
    pub(crate) wasi: RefCell<Option<Rc<WasiCtx>>>,
    pub(crate) lifecycle: RefCell<Lifecycle>,
    pub(crate) failure: RefCell<Option<Failure>>,
    pub(crate) restarts: RefCell<Restarts>,
    /// Fuel the last finished entry used (its export and the host's calls into the
    /// allocator for it).
    pub(crate) last_entry_fuel: std::cell::Cell<u64>,
    /// Fuel the instance's start function used (or its image's, when it started from one).
    pub(crate) start_fuel: std::cell::Cell<u64>,
    /// Serializes entries; FIFO, so waiters are served in arrival order.
    pub(crate) entry: Arc<Mutex<()>>,
    pub(crate) exports_free: bool,
    pub(crate) exports_on_call: bool,
}

impl<E: Engine> Cell<E> {
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn spec(&self) -> &CellSpec {
        &self.spec
    }

    pub fn lifecycle(&self) -> Lifecycle {
        *self.lifecycle.borrow()
    }

    /// How the cell failed (the last failure, if a restart has since replaced the instance).
    pub fn failure(&self) -> Option<Failure> {
        self.failure.borrow().clone()
    }

    pub fn limits(&self) -> CellLimits {
        self.limits
    }

    /// Fuel the last finished entry used.
    pub fn last_entry_fuel(&self) -> u64 {
        self.last_entry_fuel.get()
    }

    /// Fuel the start function used for this cell's instance (taken from its start image
    /// when it started from one).
    pub fn start_fuel(&self) -> u64 {
        self.start_fuel.get()
    }

    /// How many times the restart policy has replaced the instance in the current window.
    pub fn restarts(&self) -> u32 {
        self.restarts.borrow().count
    }

    /// Whether the cell serves sibling calls (`pulp_on_call`).
    pub fn has_provider(&self) -> bool {
        self.exports_on_call
    }

    /// Whether `caller` may call this cell: `depends_on` names it, or `consumes` names it or
    /// something it `provides`.
    pub fn authorizes(&self, caller: &CellSpec) -> bool {
        let me = &self.spec;
        caller.depends_on.contains(&me.name)
            || caller
                .consumes
                .iter()
                .any(|c| *c == me.name || me.provides.contains(c))
    }
}
