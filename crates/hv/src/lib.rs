//! The hypervisor seam between a guest kernel and the host monitor.
//!
//! Guest and monitor code is written against these traits; the simulation binding (`sim`)
//! implements them on the simkit kernel, and a KVM binding implements them with irqfd,
//! ioeventfd and port-I/O exits:
//!
//! | seam                         | simulation                          | KVM                                   |
//! |------------------------------|-------------------------------------|---------------------------------------|
//! | `Doorbell::ring` (guest→host) | `SimEventFd`: counter, seeded delay | ioeventfd write with datamatch        |
//! | `EventWaiter::wait` (host)   | `SimEventFd`: read-and-clear        | `AsyncFd<EventFd>` read               |
//! | `IrqRaiser::raise` (host)    | `SimIrqLine`: seeded delivery       | irqfd write (GSI)                     |
//! | `IrqWaiter::wait` (guest)    | per-thread latch, vCPU parks        | `hlt` until the interrupt             |
//! | `Hypercalls::call` (guest)   | host handler after a seeded exit    | `out` to a port, `KVM_EXIT_IO`        |
//! | `VmControl` (host)           | vCPU stops at its next step         | `immediate_exit` / vCPU thread signal |
//! | `ring_pipe::SharedMemory`    | `SimShm` over the memory model      | guest memory region mapped in the VMM |

#![cfg_attr(not(feature = "sim"), no_std)]

extern crate alloc;

pub mod blocking;
pub mod metal;
#[cfg(feature = "sim")]
pub mod sim;

use core::future::Future;

/// One side signals the other. Ringing is serializing for the ringer: its earlier stores are
/// visible before the other side wakes.
pub trait Doorbell {
    fn ring(&self);
}

/// Host side of a guest→host doorbell, with eventfd counter semantics: each ring adds one; a wait
/// returns the count accumulated since the last wait and clears it, so rings coalesce. A wait can
/// also return 0 (a spurious wake-up, as `AsyncFd` readiness followed by `EAGAIN`): callers
/// re-check their condition.
pub trait EventWaiter {
    fn wait(&self) -> impl Future<Output = u64>;
    /// Reads and clears the count without waiting.
    fn try_take(&self) -> u64;
}

/// Host side of an interrupt line into the guest.
pub trait IrqRaiser {
    fn raise(&self);
}

/// Guest side of an interrupt line. Each waiting thread has a latch: an interrupt delivered while
/// the thread is not halted is remembered, so "check, then halt" cannot lose it, as long as the
/// thread takes a ticket before its check.
pub trait IrqWaiter {
    /// Taken before checking the wake condition.
    fn ticket(&self) -> u64;
    /// Halts until an interrupt newer than `ticket` (returns at once if one already arrived).
    fn wait(&self, ticket: u64) -> impl Future<Output = ()>;
}

/// Calls from the guest into the host (a VM exit).
pub trait Hypercalls {
    fn call(&self, nr: u64, args: [u64; 4]) -> impl Future<Output = u64>;
}

/// Host control of the VM's vCPUs.
pub trait VmControl {
    fn pause(&self);
    fn resume(&self);
    fn is_paused(&self) -> bool;
}
