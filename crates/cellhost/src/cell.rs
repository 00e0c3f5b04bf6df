//! One loaded cell: its manifest, its instance, where it is in its lifecycle, and the lock that
//! serializes every entry into it (init, step, sibling call, shutdown, close).

use crate::capability::BindError;
use crate::engine::{Engine, LoadError, MemoryError, Trap};
use crate::manifest::{CellSpec, ManifestError};
use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use tokio::sync::Mutex;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    /// Instantiated; `pulp_init` not yet run (or it failed).
    Loaded,
    Ready,
    ShutDown,
    Closed,
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
    /// The cell trapped (its memory is intact; the call is abandoned).
    Trap(Trap),
    /// An export ran past the fuel budget of one entry.
    FuelExhausted {
        export: &'static str,
        fuel: u64,
    },
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
            CellError::Trap(t) => t.fmt(f),
            CellError::FuelExhausted { export, fuel } => {
                write!(f, "`{export}` ran past its budget of {fuel} fuel")
            }
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

pub struct Cell<E: Engine> {
    pub(crate) spec: CellSpec,
    /// Dropped at close.
    pub(crate) instance: RefCell<Option<E::Instance>>,
    pub(crate) lifecycle: RefCell<Lifecycle>,
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
