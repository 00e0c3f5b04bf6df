//! The interrupt line's event channel (the shape of Xen's PV event channels): an epoch word in
//! guest RAM at `IRQ_EPOCH_GPA` that every raise increments, and the `HALT` hypercall, which
//! parks the vCPU thread until the epoch passes the guest's ticket. It stands in for `hlt` plus
//! interrupt delivery on hosts where the guest cannot take interrupts (it runs at CPL 3; see
//! `hv::metal`), with the same guarantee the seam states: a thread that took its ticket before
//! checking its condition cannot miss an interrupt raised after the ticket.

use crate::KvmError;
use crate::ram::GuestRam;
use hv::metal::IRQ_EPOCH_GPA;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// How often a halted vCPU thread looks at its stop flag (stopping also notifies it).
const STOP_POLL: Duration = Duration::from_millis(20);
/// How long a halt polls the epoch before it sleeps (KVM's halt polling, `halt_poll_ns`): the
/// interrupt a halted guest waits for usually comes within microseconds, and a sleep and wake
/// through the scheduler costs more than that.
const HALT_POLL: Duration = Duration::from_micros(50);

pub(crate) struct EventChannel {
    ram: GuestRam,
    parked: Mutex<()>,
    wake: Condvar,
    /// Whether the vCPU is in `halt` now.
    halted: AtomicBool,
}

impl EventChannel {
    pub(crate) fn new(ram: &GuestRam) -> Result<Self, KvmError> {
        // Checked once here, so `raise` and `halt` cannot fail.
        ram.atomic_u64(IRQ_EPOCH_GPA)?;
        Ok(Self {
            ram: ram.clone(),
            parked: Mutex::new(()),
            wake: Condvar::new(),
            halted: AtomicBool::new(false),
        })
    }

    fn epoch(&self) -> u64 {
        self.ram
            .atomic_u64(IRQ_EPOCH_GPA)
            .map_or(0, |w| w.load(Ordering::SeqCst))
    }

    /// One interrupt: publishes the new epoch (after every store the raiser made), then wakes a
    /// halted vCPU. Taking the lock orders the notify after a halt that saw the old epoch.
    pub(crate) fn raise(&self) {
        if let Ok(word) = self.ram.atomic_u64(IRQ_EPOCH_GPA) {
            word.fetch_add(1, Ordering::SeqCst);
        }
        drop(self.parked.lock());
        self.wake.notify_all();
    }

    /// Blocks until the epoch is past `ticket`, returning it, or `None` once `stop` is set.
    pub(crate) fn halt(&self, ticket: u64, stop: &AtomicBool) -> Option<u64> {
        let polling = std::time::Instant::now(); // determinism-ok: KVM halt polling on the real vCPU thread
        while polling.elapsed() < HALT_POLL {
            let now = self.epoch();
            if now > ticket {
                return Some(now);
            }
            std::hint::spin_loop();
        }
        let mut guard = self.parked.lock().ok()?;
        self.halted.store(true, Ordering::SeqCst);
        let end = loop {
            let now = self.epoch();
            if now > ticket {
                break Some(now);
            }
            if stop.load(Ordering::SeqCst) {
                break None;
            }
            match self.wake.wait_timeout(guard, STOP_POLL) {
                Ok((g, _)) => guard = g,
                Err(_) => break None,
            }
        };
        self.halted.store(false, Ordering::SeqCst);
        end
    }

    pub(crate) fn is_halted(&self) -> bool {
        self.halted.load(Ordering::SeqCst)
    }

    pub(crate) fn notify_stop(&self) {
        drop(self.parked.lock());
        self.wake.notify_all();
    }
}
