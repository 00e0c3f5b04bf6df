//! A latched doorbell: a simulated interrupt line into one waiting actor.
//!
//! Model: ringing is serializing for the ringer (an exit or a syscall: its earlier stores are
//! visible before the wake) and carries a happens-before edge to the woken waiter. `ring`
//! delivers after a seeded latency (0–2 µs, and up to 20 µs more under buggify);
//! delivery sets a pending latch and wakes the waiter; `wait` returns at once if the latch is set
//! and clears it, so a ring that lands before the waiter parks is not lost. Several rings before
//! a wait coalesce into one. Faults injected: delivery latency, and spurious wake-ups (under
//! buggify, an extra wake on top of the delivery that does not set the latch: `wait` returns
//! anyway, and the waiter must re-check its condition).
//!
//! Planted bug `mailbox-lost-wakeup` clears the latch when the waiter arms, as Arca's `wfi`
//! checks `INTERRUPTED` only after `hlt`: a ring delivered between the check and the sleep is lost.

use simkit::{Ctx, SyncToken};
use std::cell::RefCell;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

#[derive(Default)]
struct State {
    pending: bool,
    spurious: bool,
    edge: SyncToken,
    waiter: Option<Waker>,
}

#[derive(Clone)]
pub struct Doorbell {
    ctx: Ctx,
    name: &'static str,
    state: Rc<RefCell<State>>,
    clear_on_arm: bool,
}

impl Doorbell {
    pub fn new(ctx: Ctx, name: &'static str, clear_on_arm: bool) -> Self {
        Self {
            ctx,
            name,
            state: Rc::default(),
            clear_on_arm,
        }
    }

    pub fn ring(&self) {
        let mut latency = self.ctx.choose(2_001);
        if self.ctx.buggify() {
            latency += self.ctx.choose(20_001);
        }
        let edge = self.ctx.sync_release();
        self.ctx
            .trace("ring", format_args!("{} latency={latency}", self.name));
        self.deliver_at(latency, Some(edge));
        // A spurious wake-up comes on top of the real delivery, never instead of it.
        if self.ctx.buggify() {
            let extra = self.ctx.choose(2_001);
            self.deliver_at(extra, None);
        }
    }

    /// Schedules a delivery: a real one (sets the latch, carries the ringer's edge) or, with
    /// `None`, a spurious wake-up.
    fn deliver_at(&self, latency: u64, edge: Option<SyncToken>) {
        let (state, name) = (self.state.clone(), self.name);
        self.ctx.with(|k| {
            let at = k.now() + latency;
            k.schedule_at(
                at,
                Box::new(move |k| {
                    let mut s = state.borrow_mut();
                    match &edge {
                        Some(edge) => {
                            s.edge.merge(edge);
                            s.pending = true;
                        }
                        None => s.spurious = true,
                    }
                    k.trace_as(
                        name,
                        "deliver",
                        format_args!("{}", if edge.is_some() { "irq" } else { "spurious" }),
                    );
                    if let Some(w) = s.waiter.take() {
                        w.wake();
                    }
                }),
            );
        });
    }

    /// Parks until a delivery (or a spurious wake-up). Arming is a step of its own, as entering
    /// `wfi`/`hlt` or an `eventfd` read is: a delivery can land between the caller's last check
    /// and the arm.
    pub async fn wait(&self) {
        self.ctx.yield_now().await;
        let mut armed = false;
        poll_fn(|cx| {
            let mut s = self.state.borrow_mut();
            if !armed {
                armed = true;
                if self.clear_on_arm {
                    s.pending = false;
                }
            }
            if s.pending || s.spurious {
                s.pending = false;
                s.spurious = false;
                self.ctx.sync_acquire(&s.edge);
                Poll::Ready(())
            } else {
                s.waiter = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
    }
}
