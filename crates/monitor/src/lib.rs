//! The host monitor: it owns the shared region, answers the guest's control requests by
//! allocating pipes, and runs one relay task per pipe (echo, files, TCP listeners and
//! connections), each woken by the pipe's doorbells. It is async Rust written against the [`Platform`] seam, so it runs on
//! simkit actors in simulation and on tokio (`spawn_local`, `AsyncFd<EventFd>`) in hardware
//! runs. The guest is untrusted: every frame it sends is decoded with typed errors, and a
//! protocol error closes that pipe cleanly; nothing it sends can make the monitor panic.

pub mod alloc;
pub mod control;
pub mod files;
pub mod host_files;
pub mod host_net;
pub mod host_pipe;
pub mod net;
pub mod relay;

use core::fmt;
use hv::{EventWaiter, IrqRaiser};
use ring_pipe::SharedMemory;
use std::future::Future;
use std::pin::Pin;

pub use control::ControlHandler;
pub use files::FileStore;
pub use host_files::HostDir;
pub use host_pipe::{HostPipe, HostPipeError};
pub use net::{Connection, Net, NetReader, NetWriter, NoNet};
pub use ring_pipe::msg::{CONTROL_DOORBELL, CONTROL_RING_SIZE, control_pipe_info};

/// What the monitor needs from the host platform.
pub trait Platform: Clone + 'static {
    type Mem: SharedMemory + Clone + 'static;
    type Waiter: EventWaiter + 'static;
    type Irq: IrqRaiser + Clone + 'static;
    type Net: Net;

    fn memory(&self) -> Self::Mem;
    /// Memory limited to one pipe's rings, for the relay that serves it.
    fn pipe_memory(&self, offset: u64, len: u64) -> Self::Mem;
    /// The host side of guest doorbell `id`.
    fn doorbell(&self, id: u64) -> Self::Waiter;
    /// The interrupt line into the guest (shared by every pipe).
    fn irq(&self) -> Self::Irq;
    /// The network the TCP relays reach.
    fn net(&self) -> Self::Net;
    /// Runs `fut` as an independent task.
    fn spawn(&self, name: &str, fut: Pin<Box<dyn Future<Output = ()>>>);
    /// Records an observable event.
    fn trace(&self, event: &str, details: fmt::Arguments<'_>);
    /// Where a new pipe's ring cursors start (near u64::MAX in tests, to exercise wrap-around).
    fn start_cursor(&self) -> u64;
}

/// Planted bugs in the monitor (effective only with feature `planted-bugs`).
pub mod planted {
    /// A pipe's memory is freed when its relay ends, not when the guest closes the pipe, so a
    /// new pipe can be placed over rings the guest still reads (Arca PROTOCOL.md §2, §9).
    pub const FREE_BEFORE_GUEST_CLOSE: u32 = 1 << 0;
    /// The TCP relay loops `while !writer_closed { read; forward }`, so bytes the guest wrote
    /// just before closing are never read and the FIN goes out without them (Arca
    /// `monitor/src/relay.rs` `pipe_to_tcp`).
    pub const TCP_FIN_BEFORE_DRAIN: u32 = 1 << 1;
}

pub(crate) fn has(bugs: u32, bug: u32) -> bool {
    cfg!(feature = "planted-bugs") && bugs & bug != 0
}

/// Monitor configuration.
#[derive(Clone, Copy, Debug, Default)]
pub struct MonitorConfig {
    /// Planted ring bugs applied to the host's rings (see `ring_pipe::planted`).
    pub ring_bugs: u32,
    /// Planted monitor bugs (see [`planted`]).
    pub bugs: u32,
}
