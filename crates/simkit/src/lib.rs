//! simkit: the deterministic simulation kernel.
//!
//! One decision stream (`DecisionSource`) feeds every nondeterministic choice; a virtual clock
//! and a discrete-event queue order time; actors are async futures run one scheduling step at a
//! time by a single-threaded executor under a pluggable strategy (random walk, PCT, replay);
//! shared memory goes through a model with sc / tso / relaxed modes; every event is a trace line
//! whose hash fingerprints the run.

pub mod atomic;
pub mod buggify;
pub mod ctx;
pub mod decision;
pub mod event_queue;
pub mod executor;
pub mod kernel;
pub mod memory;
pub mod names;
pub mod observe;
pub mod region;
pub mod strategy;
pub mod sync;
pub mod trace;

pub use atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64};
pub use ctx::{Ctx, ParkGuard};
pub use decision::{DecisionMode, DecisionSource};
pub use executor::{
    ActorPanic, EndReason, LostWakeup, RunOutcome, Sim, clear_spares,
    install_quiet_actor_panic_hook,
};
pub use kernel::{ActorId, At, Kernel, KernelOptions, WaitCondition};
pub use memory::{MemError, MemMode, Memory, Ordering, SyncToken};
pub use observe::{FaultCount, Observations};
pub use region::{Region, RmwOp};
pub use strategy::{Schedulable, Strategy, StrategyKind};
pub use sync::{Mutex, MutexGuard, Notify};
pub use trace::{MemEvent, MemOp, Trace, fnv1a_of};
