//! The simulated VM: its doorbells, interrupt lines, hypercall handler and pause state.
//!
//! Model: a hypercall is a VM exit: the calling vCPU is held for a seeded exit latency, then the
//! host handler runs and its result returns to the guest. Pause holds every vCPU at its next
//! step (`wait_runnable`) until resume.

use crate::sim::{SimEventFd, SimIrqLine};
use crate::{Hypercalls, VmControl};
use simkit::Ctx;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

/// The host's hypercall handler: `(nr, args) -> result`.
pub type HypercallHandler = Box<dyn FnMut(u64, [u64; 4]) -> u64>;

struct Inner {
    doorbells: RefCell<BTreeMap<u64, SimEventFd>>,
    irqs: RefCell<BTreeMap<u64, SimIrqLine>>,
    handler: RefCell<Option<HypercallHandler>>,
    paused: Cell<bool>,
    resume_waiters: RefCell<Vec<Waker>>,
    irq_bugs: Cell<u32>,
}

#[derive(Clone)]
pub struct SimVm {
    ctx: Ctx,
    base_latency_ns: u64,
    inner: Rc<Inner>,
}

impl SimVm {
    pub fn new(ctx: Ctx, base_latency_ns: u64) -> Self {
        let inner = Inner {
            doorbells: RefCell::default(),
            irqs: RefCell::default(),
            handler: RefCell::default(),
            paused: Cell::new(false),
            resume_waiters: RefCell::default(),
            irq_bugs: Cell::new(0),
        };
        Self {
            ctx,
            base_latency_ns,
            inner: Rc::new(inner),
        }
    }

    /// Planted bugs for the guest's interrupt waits (see `sim::planted`).
    pub fn plant_irq_bugs(&self, bugs: u32) {
        self.inner.irq_bugs.set(bugs);
    }

    /// The guest→host doorbell with this id (created on first use).
    pub fn doorbell(&self, id: u64) -> SimEventFd {
        self.inner
            .doorbells
            .borrow_mut()
            .entry(id)
            .or_insert_with(|| {
                SimEventFd::new(self.ctx.clone(), &format!("db{id}"), self.base_latency_ns)
            })
            .clone()
    }

    /// The host→guest interrupt line with this number (created on first use).
    pub fn irq_line(&self, line: u64) -> SimIrqLine {
        self.inner
            .irqs
            .borrow_mut()
            .entry(line)
            .or_insert_with(|| {
                SimIrqLine::new(
                    self.ctx.clone(),
                    &format!("irq{line}"),
                    self.base_latency_ns,
                )
                .with_planted(self.inner.irq_bugs.get())
            })
            .clone()
    }

    pub fn set_hypercall_handler(&self, handler: HypercallHandler) {
        *self.inner.handler.borrow_mut() = Some(handler);
    }

    /// Ready when the VM runs; registers the waker while it is paused.
    pub fn poll_runnable(&self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if self.inner.paused.get() {
            self.inner
                .resume_waiters
                .borrow_mut()
                .push(cx.waker().clone());
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    /// Holds the calling vCPU while the VM is paused.
    pub async fn wait_runnable(&self) {
        poll_fn(|cx| self.poll_runnable(cx)).await;
    }
}

impl Hypercalls for SimVm {
    async fn call(&self, nr: u64, args: [u64; 4]) -> u64 {
        let edge = self.ctx.sync_release();
        let exit_ns = self.base_latency_ns + self.ctx.choose(self.base_latency_ns + 1);
        self.ctx.trace(
            "hypercall",
            format_args!("nr={nr} args={args:?} exit_ns={exit_ns}"),
        );
        self.ctx.sleep(exit_ns).await;
        self.ctx.sync_acquire(&edge);
        let result = match self.inner.handler.borrow_mut().as_mut() {
            Some(h) => h(nr, args),
            // No handler: the VMM rejects the call, as KVM userspace would with -ENOSYS.
            None => u64::MAX,
        };
        self.ctx
            .trace("hypercall-return", format_args!("nr={nr} result={result}"));
        result
    }
}

impl VmControl for SimVm {
    fn pause(&self) {
        self.inner.paused.set(true);
        self.ctx.trace("vm", format_args!("pause"));
    }

    fn resume(&self) {
        self.inner.paused.set(false);
        self.ctx.trace("vm", format_args!("resume"));
        for w in self.inner.resume_waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    fn is_paused(&self) -> bool {
        self.inner.paused.get()
    }
}
