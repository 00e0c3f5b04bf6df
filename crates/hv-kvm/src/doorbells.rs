//! The doorbells of one VM: an eventfd per doorbell id, each registered as an ioeventfd on the
//! doorbell MMIO address (KVM signals it on a guest write, with no exit).

use crate::KvmError;
use hv::metal::DOORBELL_MMIO;
use kvm_ioctls::{IoEventAddress, VmFd};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

/// The doorbells' eventfds by id, each registered as an ioeventfd once. Shared with the vCPU
/// thread: a ring of an id nobody asked for yet exits to it instead of reaching an eventfd, and
/// it creates the eventfd and adds the ring, so a guest that rings before the monitor listens
/// loses nothing (eventfd counters latch, as the simulation's do).
pub(crate) struct Doorbells {
    pub(crate) vm: Arc<VmFd>,
    pub(crate) fds: Mutex<BTreeMap<u64, EventFd>>,
}

impl Doorbells {
    /// A new handle on doorbell `id`'s counter, creating and registering it on first use.
    pub(crate) fn handle(&self, id: u64) -> Result<EventFd, KvmError> {
        let datamatch = u32::try_from(id).map_err(|_| KvmError::DoorbellId(id))?;
        let mut fds = self
            .fds
            .lock()
            .map_err(|_| KvmError::Poisoned("doorbells"))?;
        if let Some(fd) = fds.get(&id) {
            return fd.try_clone().map_err(|e| KvmError::Os("dup eventfd", e));
        }
        let fd = EventFd::new(EFD_NONBLOCK).map_err(|e| KvmError::Os("eventfd", e))?;
        self.vm
            .register_ioevent(&fd, &IoEventAddress::Mmio(DOORBELL_MMIO), datamatch)
            .map_err(|e| KvmError::Ioctl("KVM_IOEVENTFD", e))?;
        let mine = fd.try_clone().map_err(|e| KvmError::Os("dup eventfd", e))?;
        fds.insert(id, fd);
        Ok(mine)
    }

    /// A ring that exited to the VMM because no ioeventfd matched it yet.
    pub(crate) fn ring_late(&self, id: u64) -> Result<(), KvmError> {
        self.handle(id)?
            .write(1)
            .map_err(|e| KvmError::Os("eventfd write", e))
    }
}
