//! The KVM binding of the hypervisor seam (`hv`), for hardware runs.
//!
//! | seam                 | here                                                            |
//! |----------------------|-----------------------------------------------------------------|
//! | shared memory        | a [`RawShm`](raw_shm::RawShm) view of guest RAM (`Machine::shm`)  |
//! | `EventWaiter`        | [`DoorbellWaiter`]: MMIO ioeventfd on `DOORBELL_MMIO`, `AsyncFd` read |
//! | `IrqRaiser`          | [`IrqLine`]: irqfd on `IRQ_GSI` through the in-kernel PIC, and the event channel's epoch |
//! | guest halt           | the `HALT` hypercall, parked on the event channel (`events`)      |
//! | hypercalls           | a read of `HYPERCALL_MMIO`, served by an [`ExitHandler`]          |
//! | vCPU                 | [`VcpuThread`]: `KVM_RUN` on its own thread, stoppable by signal  |
//!
//! The guest-side half is `crates/metal-guest`; their shared ABI is `hv::metal`. Hardware runs
//! are not deterministic: they record a trace and the simulation's oracles judge it.

pub mod boot;
mod doorbells;
pub mod elf;
mod events;
mod machine;
mod ram;
pub mod reports;
mod signals;
pub mod stream;
mod vcpu;

pub use elf::ElfError;
pub use machine::{Machine, available};
pub use ram::GuestRam;
pub use signals::{DoorbellWaiter, IrqLine};
pub use vcpu::{ExitHandler, Hypercall, VcpuEnd, VcpuThread};

use std::fmt;

#[derive(Debug)]
pub enum KvmError {
    /// `/dev/kvm` cannot be opened (absent, or no permission).
    NoKvm(kvm_ioctls::Error),
    Ioctl(&'static str, kvm_ioctls::Error),
    Os(&'static str, std::io::Error),
    Elf(ElfError),
    OutOfRam {
        gpa: u64,
        len: usize,
    },
    ParamsTooLarge(usize),
    DoorbellId(u64),
    Signal(String),
    Poisoned(&'static str),
    AlreadyLoaded,
    AlreadyStarted,
}

impl From<ElfError> for KvmError {
    fn from(e: ElfError) -> Self {
        KvmError::Elf(e)
    }
}

impl fmt::Display for KvmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvmError::NoKvm(e) => write!(f, "cannot open /dev/kvm ({e}): hardware runs need KVM"),
            KvmError::Ioctl(what, e) => write!(f, "{what} failed: {e}"),
            KvmError::Os(what, e) => write!(f, "{what} failed: {e}"),
            KvmError::Elf(e) => write!(f, "guest image: {e}"),
            KvmError::OutOfRam { gpa, len } => {
                write!(
                    f,
                    "{len} bytes at guest address {gpa:#x} are outside guest RAM"
                )
            }
            KvmError::ParamsTooLarge(len) => write!(f, "boot parameters of {len} bytes do not fit"),
            KvmError::DoorbellId(id) => {
                write!(f, "doorbell id {id} does not fit the 4-byte datamatch")
            }
            KvmError::Signal(e) => write!(f, "registering the vCPU stop signal failed: {e}"),
            KvmError::Poisoned(what) => write!(f, "{what} lock poisoned"),
            KvmError::AlreadyLoaded => f.write_str("the machine already has a guest image"),
            KvmError::AlreadyStarted => f.write_str("the machine's vCPU already started"),
        }
    }
}

impl std::error::Error for KvmError {}
