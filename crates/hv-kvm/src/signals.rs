//! The hv seam's host-side signals on KVM, for the monitor's tokio runtime: a doorbell is an
//! ioeventfd read through `AsyncFd` (eventfd counter semantics: rings add, a read returns and
//! clears the count, so rings before a wait coalesce), and the interrupt line is an irqfd write
//! plus an event-channel raise.

use crate::KvmError;
use crate::events::EventChannel;
use std::sync::Arc;
use tokio::io::unix::AsyncFd;
use vmm_sys_util::eventfd::EventFd;

/// The host side of a guest→host doorbell.
pub struct DoorbellWaiter {
    fd: AsyncFd<EventFd>,
}

impl DoorbellWaiter {
    pub(crate) fn new(fd: EventFd) -> Result<Self, KvmError> {
        // SAFETY: the EventFd owns its descriptor, keeps it open until it drops (which is when
        // the AsyncFd drops), and `as_raw_fd` always returns that one descriptor.
        #[allow(unsafe_code)]
        let fd = unsafe { AsyncFd::register(fd) }
            .map_err(|e| KvmError::Os("register an eventfd with tokio", e.into()))?;
        Ok(Self { fd })
    }
}

impl hv::EventWaiter for DoorbellWaiter {
    async fn wait(&self) -> u64 {
        let Ok(mut ready) = self.fd.readable().await else {
            return 0;
        };
        match ready.try_io(|fd| fd.get_ref().read()) {
            Ok(Ok(count)) => count,
            // Readiness without a count (EAGAIN) is a spurious wake-up; the seam allows it and
            // callers re-check their condition.
            Ok(Err(_)) | Err(_) => 0,
        }
    }

    fn try_take(&self) -> u64 {
        self.fd.get_ref().read().unwrap_or(0)
    }
}

/// The host side of the interrupt line into the guest.
#[derive(Clone)]
pub struct IrqLine {
    fd: Arc<EventFd>,
    events: Arc<EventChannel>,
}

impl IrqLine {
    pub(crate) fn new(fd: EventFd, events: Arc<EventChannel>) -> Self {
        Self {
            fd: Arc::new(fd),
            events,
        }
    }
}

impl hv::IrqRaiser for IrqLine {
    fn raise(&self) {
        self.events.raise();
        // An eventfd write fails only when the counter would overflow, i.e. with ~2^64
        // interrupts already pending: the guest is then interrupted anyway.
        let _ = self.fd.write(1);
    }
}
