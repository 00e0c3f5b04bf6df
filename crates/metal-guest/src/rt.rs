//! The guest kernel's platform on bare metal: the vCPU executor loop around `GuestKernel`, the
//! interrupt line as an `IrqWaiter`, doorbells as MMIO writes, and the shared region as a raw
//! view of identity-mapped memory.
//!
//! Interrupts arrive through the event channel (`hv::metal::IRQ_EPOCH_GPA`): a kernel thread's
//! ticket is the epoch it read before checking its condition, and its wait parks it until the
//! epoch passes that ticket. When every thread is parked, the vCPU halts (the `HALT` hypercall)
//! until an interrupt newer than the oldest ticket, then wakes the parked threads to re-check,
//! as Arca requeues every thread in WFI after an interrupt.

use crate::arch;
use alloc::sync::Arc;
use alloc::task::Wake;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::future::Future;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Context, Poll, Waker};
use guest::VcpuHooks;
use hv::metal::planted;

struct CpuWake(AtomicBool);

impl Wake for CpuWake {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }
}

/// Threads parked on the interrupt line, each with the epoch it waits to pass.
struct Waiters(RefCell<Vec<(u64, Waker)>>);
// SAFETY: `Sync` is needed for a static; there is one vCPU and no interrupt handler, so it is
// never accessed concurrently.
#[allow(unsafe_code)]
unsafe impl Sync for Waiters {}
static WAITERS: Waiters = Waiters(RefCell::new(Vec::new()));

/// Runs `fut` (the guest kernel) to completion on this vCPU.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let wake = Arc::new(CpuWake(AtomicBool::new(false)));
    let waker = Waker::from(wake.clone());
    let mut cx = Context::from_waker(&waker);
    let mut fut = core::pin::pin!(fut);
    loop {
        wake.0.store(false, Ordering::Release);
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        if !wake.0.load(Ordering::Acquire) {
            // Idle: halt until an interrupt some parked thread has not seen, then let every
            // parked thread re-check.
            let parked: Vec<(u64, Waker)> = WAITERS.0.borrow_mut().drain(..).collect();
            let oldest = parked.iter().map(|(t, _)| *t).min();
            let ticket = oldest.unwrap_or_else(arch::irq_epoch);
            if arch::irq_epoch() <= ticket {
                arch::halt(ticket);
            }
            for (_, w) in parked {
                w.wake();
            }
        }
    }
}

/// The interrupt line as a kernel thread waits on it.
#[derive(Clone, Copy)]
pub struct MetalIrq {
    bugs: u32,
}

impl MetalIrq {
    pub fn new(bugs: u32) -> Self {
        Self { bugs }
    }
}

impl hv::IrqWaiter for MetalIrq {
    fn ticket(&self) -> u64 {
        arch::irq_epoch()
    }

    async fn wait(&self, ticket: u64) {
        // Entering the halt is a step of its own, as in the simulation: other threads may run
        // (and interrupts land) between the caller's check and the park.
        let mut yielded = false;
        core::future::poll_fn(|cx| {
            if yielded {
                Poll::Ready(())
            } else {
                yielded = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        })
        .await;
        let ticket = if self.bugs & planted::WFI_LOST_WAKEUP != 0 {
            arch::irq_epoch()
        } else {
            ticket
        };
        core::future::poll_fn(|cx| {
            if arch::irq_epoch() > ticket {
                Poll::Ready(())
            } else {
                WAITERS.0.borrow_mut().push((ticket, cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }
}

/// How the stream writer waits for space: on the interrupt line the reader raises.
pub struct IdleSleep;

impl hv::blocking::Sleep for IdleSleep {
    type Ticket = u64;
    fn ticket(&self) -> u64 {
        arch::irq_epoch()
    }
    fn sleep(&self, ticket: u64) -> impl Future<Output = ()> {
        const LINE: MetalIrq = MetalIrq { bugs: 0 };
        hv::IrqWaiter::wait(&LINE, ticket)
    }
}

/// A host doorbell: an MMIO write of its id.
#[derive(Clone, Copy)]
pub struct MmioBell(pub u32);

impl hv::Doorbell for MmioBell {
    fn ring(&self) {
        arch::ring_doorbell(self.0);
    }
}

/// Preemption by "timer ticks": a seeded xorshift decides, like the simulation's 1-in-16
/// chance, so threads interleave at the same kind of points.
pub struct MetalHooks {
    state: core::cell::Cell<u64>,
}

impl MetalHooks {
    pub fn new(seed: u64) -> Self {
        Self {
            state: core::cell::Cell::new(seed | 1),
        }
    }
}

impl VcpuHooks for MetalHooks {
    fn preempt(&self) -> bool {
        let mut x = self.state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state.set(x);
        x.is_multiple_of(16)
    }

    fn running(&self, _: Option<&str>) {}

    fn poll_runnable(&self, _: &mut Context<'_>) -> Poll<()> {
        // The host pauses a hardware VM by not running its vCPU; nothing to wait for here.
        Poll::Ready(())
    }
}
