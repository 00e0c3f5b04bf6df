//! The guest kernel's side of the ring pipes: kernel threads multiplexed on one vCPU, a
//! wait-for-interrupt that parks a thread until its interrupt arrives, and pipe clients with
//! blocking reads and writes on top of the non-blocking rings.
//!
//! `no_std` with `alloc`, so the same code runs in the simulator (vCPU = a simkit actor) and on
//! bare metal in a real vCPU. Everything outside the guest is reached through the `hv` seam.
#![no_std]

extern crate alloc;

pub mod control;
pub mod kernel;
pub mod pipe;
pub mod sync;

pub use control::ControlClient;
pub use kernel::{GuestKernel, KernelHandle, VcpuHooks};
pub use pipe::{PipeEnd, PipeError};

/// Planted bugs in the guest (effective only with feature `planted-bugs`).
pub mod planted {
    /// `write_all` treats a closed reader like a full ring and retries forever without
    /// sleeping (Arca `pipe/src/traits.rs` `write_all`, relay `tcp_to_pipe`).
    pub const SPIN_ON_DEAD_PEER: u32 = 1 << 0;
    /// Closing the write side does not ring the doorbell, so a peer asleep in its wait never
    /// sees end-of-file (Arca pr-2 / pr-4.1 `bidirectional_pipe.rs`).
    pub const CLOSE_NO_DOORBELL: u32 = 1 << 1;
}

pub(crate) fn has(bugs: u32, bug: u32) -> bool {
    cfg!(feature = "planted-bugs") && bugs & bug != 0
}
