//! The guest kernel's platform on bare metal: the vCPU executor loop around `GuestKernel`, the
//! interrupt line as an `IrqWaiter`, doorbells as MMIO writes, and the shared region as a raw
//! view of identity-mapped memory.
//!
//! This guest cannot halt (see `arch`), so a wait on the interrupt line is a spurious wake-up
//! after the vCPU has found nothing else to run: when every kernel thread is parked, the loop
//! spins once and wakes all waiters, which re-check their rings, exactly as after an interrupt
//! that was not for them. Host→guest interrupts (irqfd) are raised by the monitor but not taken.

use crate::arch;
use alloc::sync::Arc;
use alloc::task::Wake;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::future::Future;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Context, Poll, Waker};
use guest::VcpuHooks;

struct CpuWake(AtomicBool);

impl Wake for CpuWake {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }
}

/// Threads parked on the interrupt line.
struct Waiters(RefCell<Vec<Waker>>);
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
            // Idle: what a halt would end in, a wake-up for every waiter.
            core::hint::spin_loop();
            let parked: Vec<Waker> = WAITERS.0.borrow_mut().drain(..).collect();
            for w in parked {
                w.wake();
            }
        }
    }
}

/// The interrupt line as a kernel thread waits on it: parks until the vCPU goes idle.
#[derive(Clone, Copy)]
pub struct MetalIrq;

impl hv::IrqWaiter for MetalIrq {
    fn ticket(&self) -> u64 {
        0
    }

    async fn wait(&self, _ticket: u64) {
        let mut parked = false;
        core::future::poll_fn(|cx| {
            if parked {
                Poll::Ready(())
            } else {
                parked = true;
                WAITERS.0.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// How the stream writer waits for space: the same park as on the interrupt line.
pub struct IdleSleep;

impl hv::blocking::Sleep for IdleSleep {
    type Ticket = u64;
    fn ticket(&self) -> u64 {
        0
    }
    fn sleep(&self, ticket: u64) -> impl Future<Output = ()> {
        hv::IrqWaiter::wait(&MetalIrq, ticket)
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
