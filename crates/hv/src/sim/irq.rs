//! A host→guest interrupt line (an irqfd on a GSI in KVM), shared by any number of guest threads.
//!
//! Model: `raise` is serializing for the host and delivers after a seeded latency; a delivery
//! advances the line's epoch and wakes every halted thread (as Arca requeues every WFI thread).
//! A guest thread takes a ticket (the current epoch; observing it acquires what the raises
//! published) *before* checking its wake condition and
//! then waits for an epoch newer than the ticket, so an interrupt delivered between the check and
//! the halt is kept in that thread's latch and not lost, and one thread's wake-up never consumes
//! another's. Entering the halt is a step of its own. Faults: delivery latency, spurious
//! wake-ups (under buggify: the thread returns with no new interrupt and must re-check).
//!
//! Planted bug `WFI_LOST_WAKEUP`: the wait re-reads the epoch when it halts instead of using the
//! ticket, forgetting an interrupt that landed in between.

use crate::sim::{delivery_latency, has, planted};
use crate::{IrqRaiser, IrqWaiter};
use simkit::{Ctx, SyncToken};
use std::cell::RefCell;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

#[derive(Default)]
struct State {
    epoch: u64,
    spurious: u64,
    waiters: Vec<Waker>,
    edge: SyncToken,
}

#[derive(Clone)]
pub struct SimIrqLine {
    ctx: Ctx,
    name: Rc<str>,
    base_latency_ns: u64,
    bugs: u32,
    state: Rc<RefCell<State>>,
}

impl SimIrqLine {
    pub fn new(ctx: Ctx, name: &str, base_latency_ns: u64) -> Self {
        Self {
            ctx,
            name: Rc::from(name),
            base_latency_ns,
            bugs: 0,
            state: Rc::default(),
        }
    }

    pub fn with_planted(mut self, bugs: u32) -> Self {
        self.bugs = bugs;
        self
    }

    /// Interrupts delivered so far.
    pub fn delivered(&self) -> u64 {
        self.state.borrow().epoch
    }
}

impl IrqRaiser for SimIrqLine {
    fn raise(&self) {
        let edge = self.ctx.sync_release();
        let latency = delivery_latency(&self.ctx, self.base_latency_ns);
        self.ctx
            .trace("irq", format_args!("{} latency={latency}", self.name));
        self.deliver_at(latency, Some(edge));
        // A spurious wake-up comes on top of the real delivery, never instead of it.
        if self.ctx.buggify() {
            let extra = delivery_latency(&self.ctx, self.base_latency_ns);
            self.deliver_at(extra, None);
        }
    }
}

impl SimIrqLine {
    /// Schedules a delivery: a real interrupt (with the raiser's edge) or, with `None`, a
    /// spurious wake-up of every halted thread.
    fn deliver_at(&self, latency: u64, edge: Option<SyncToken>) {
        let (state, name) = (self.state.clone(), self.name.clone());
        self.ctx.with(|k| {
            let at = k.now() + latency;
            k.schedule_at(
                at,
                Box::new(move |k| {
                    let mut s = state.borrow_mut();
                    match &edge {
                        Some(edge) => {
                            s.edge.merge(edge);
                            s.epoch += 1;
                        }
                        None => s.spurious += 1,
                    }
                    let kind = if edge.is_some() { "" } else { " spurious" };
                    k.trace_as(&name, "deliver", format_args!("epoch={}{kind}", s.epoch));
                    for w in s.waiters.drain(..) {
                        w.wake();
                    }
                }),
            );
        });
    }
}

impl IrqWaiter for SimIrqLine {
    fn ticket(&self) -> u64 {
        // Observing a delivered interrupt synchronises with its raise, as taking it would.
        let s = self.state.borrow();
        self.ctx.sync_acquire(&s.edge);
        s.epoch
    }

    async fn wait(&self, ticket: u64) {
        // Entering the halt is a step: a delivery can land here.
        self.ctx.yield_now().await;
        let (mut ticket, spurious_at_arm) = {
            let s = self.state.borrow();
            (ticket, s.spurious)
        };
        if has(self.bugs, planted::WFI_LOST_WAKEUP) {
            ticket = self.state.borrow().epoch;
        }
        poll_fn(|cx| {
            let mut s = self.state.borrow_mut();
            if s.epoch > ticket || s.spurious > spurious_at_arm {
                self.ctx.sync_acquire(&s.edge);
                Poll::Ready(())
            } else {
                if !s.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    s.waiters.push(cx.waker().clone());
                }
                Poll::Pending
            }
        })
        .await;
    }
}
