//! Oracles and reference models. Each oracle returns the violations it found; an empty list is a
//! pass. None of them reads a component's internal state: they see the kernel's outside view
//! (committed memory, parked waiters, actor status), what was observably delivered, and
//! independent reference models.

pub mod cells;
pub mod conservation;
pub mod files;
pub mod litmus;
pub mod pipes;
pub mod rpc;

/// One failed check (the harness's type: every oracle reports in it).
pub use harness::Violation;
