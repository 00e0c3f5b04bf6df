//! The WASM cell host: loads cells from strict manifests, binds host capabilities (always-on, or
//! gated with a failing stub when undeclared), and drives the Pulp ABI (`pulp_init`,
//! `pulp_step`, `pulp_on_call`, `pulp_shutdown`, `pulp_alloc`, `pulp_free`) through an engine
//! seam that runs exports in fuel slices and lets host imports defer. Every access to guest
//! memory is bounds-checked; a cell is untrusted.

pub mod abi;
pub mod capability;
pub mod cell;
pub mod cells;
pub mod engine;
pub mod host;
pub mod manifest;
pub mod msgpack;

pub use capability::{HostServices, Registry};
pub use cell::{Cell, CellError, Lifecycle};
pub use host::{CellHost, HostConfig, Pacing};

/// Planted bugs mirroring Pulp's history (effective only with feature `planted-bugs`).
pub mod planted {
    /// No cycle detection: A -> B -> A waits on A's lock forever (Pulp P1, b644682).
    pub const NO_CYCLE_CHECK: u32 = 1 << 0;
    /// The sibling-call response buffer is never freed in the target (Pulp P3, 8bf9289).
    pub const LEAK_CALL_RESPONSE: u32 = 1 << 1;
    /// Every idle tick allocates a fresh envelope buffer that is never freed (Pulp P4, 82435df).
    pub const IDLE_TICK_ALLOC: u32 = 1 << 2;
    /// `close` does not take the entry lock, so it can drop the instance under a running step
    /// or call (Pulp v0.2 before `Close` was serialized with the module mutex).
    pub const CLOSE_WITHOUT_LOCK: u32 = 1 << 3;
    /// Undeclared gated capabilities get their real imports instead of stubs.
    pub const BIND_UNDECLARED: u32 = 1 << 4;
}

pub(crate) fn has(bugs: u32, bug: u32) -> bool {
    cfg!(feature = "planted-bugs") && bugs & bug != 0
}
