//! Oracles and reference models. Each oracle returns the violations it found; an empty list is a
//! pass. None of them reads a component's internal state: they see the kernel's outside view
//! (committed memory, parked waiters, actor status), what was observably delivered, and
//! independent reference models.

pub mod cells;
pub mod conservation;
pub mod files;
pub mod litmus;
pub mod liveness;
pub mod pipes;
pub mod rpc;

/// One failed check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which oracle found it.
    pub oracle: &'static str,
    pub message: String,
}

impl Violation {
    pub fn new(oracle: &'static str, message: impl Into<String>) -> Self {
        Self {
            oracle,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.oracle, self.message)
    }
}
