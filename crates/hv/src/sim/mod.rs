//! Simulation binding of the hypervisor seam, on the simkit kernel.
//!
//! Model. Doorbells and interrupts are kernel-mediated signals: ringing is serializing for the
//! ringer (`sync_release`) and the woken side acquires its view (`sync_acquire`). Delivery takes
//! a seeded latency; under buggify it can be much later, and a delivery can be a spurious
//! wake-up. Hypercalls are VM exits: the guest's vCPU is held for a seeded exit latency while
//! the host handler runs. Pause stops the vCPU at its next step until resume.
//!
//! Faults injected: delivery latency, coalescing (several rings before a wait), spurious
//! wake-ups, exit latency, pauses.

mod eventfd;
mod irq;
mod shm;
mod vm;

pub use eventfd::SimEventFd;
pub use irq::SimIrqLine;
pub use shm::SimShm;
pub use vm::{HypercallHandler, SimVm};

/// Planted bugs at the hypervisor seam (effective only with feature `planted-bugs`).
pub mod planted {
    /// The guest's wait-for-interrupt forgets an interrupt that arrived between the thread's
    /// check and its halt (Arca `kthread::wfi` checks `INTERRUPTED` only after `hlt`).
    pub const WFI_LOST_WAKEUP: u32 = 1 << 0;
}

pub(crate) fn has(bugs: u32, bug: u32) -> bool {
    cfg!(feature = "planted-bugs") && bugs & bug != 0
}

/// Seeded delivery latency of one signal, in virtual nanoseconds.
pub(crate) fn delivery_latency(ctx: &simkit::Ctx, base_ns: u64) -> u64 {
    let mut latency = base_ns + ctx.choose(base_ns.max(1) * 2 + 1);
    if ctx.buggify() {
        latency += ctx.choose(50_000);
    }
    latency
}
