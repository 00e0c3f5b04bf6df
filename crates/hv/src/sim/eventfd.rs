//! A guest→host doorbell with eventfd counter semantics (an ioeventfd in KVM).
//!
//! Model: `ring` is serializing for the ringer and delivers after a seeded latency; delivery adds
//! one to the counter and wakes every waiter; `wait` returns and clears the count, so rings that
//! land before a wait coalesce into one wake. Faults: latency, and (under buggify) an extra
//! spurious wake-up on top of the delivery: `wait` returns 0 and the caller must re-check.

use crate::sim::delivery_latency;
use crate::{Doorbell, EventWaiter};
use simkit::{Ctx, SyncToken};
use std::cell::RefCell;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

#[derive(Default)]
struct State {
    count: u64,
    spurious: bool,
    waiters: Vec<Waker>,
    edge: SyncToken,
    rings: u64,
    deliveries: u64,
}

#[derive(Clone)]
pub struct SimEventFd {
    ctx: Ctx,
    name: Rc<str>,
    base_latency_ns: u64,
    state: Rc<RefCell<State>>,
}

impl SimEventFd {
    pub fn new(ctx: Ctx, name: &str, base_latency_ns: u64) -> Self {
        Self {
            ctx,
            name: Rc::from(name),
            base_latency_ns,
            state: Rc::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Rings so far, and deliveries that reached the counter (for oracles and reports).
    pub fn stats(&self) -> (u64, u64) {
        let s = self.state.borrow();
        (s.rings, s.deliveries)
    }
}

impl Doorbell for SimEventFd {
    fn ring(&self) {
        let edge = self.ctx.sync_release();
        let latency = delivery_latency(&self.ctx, self.base_latency_ns);
        self.ctx
            .trace("ring", format_args!("{} latency={latency}", self.name));
        self.state.borrow_mut().rings += 1;
        self.deliver_at(latency, Some(edge));
        // A spurious wake-up comes on top of the real delivery, never instead of it.
        if self.ctx.buggify() {
            let extra = delivery_latency(&self.ctx, self.base_latency_ns);
            self.deliver_at(extra, None);
        }
    }
}

impl SimEventFd {
    /// Schedules a delivery: a real ring (adds one, with the ringer's edge) or, with `None`, a
    /// spurious wake-up (the waiter returns 0).
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
                            s.count += 1;
                            s.deliveries += 1;
                        }
                        None => s.spurious = true,
                    }
                    let kind = if edge.is_some() { "" } else { " spurious" };
                    k.trace_as(&name, "deliver", format_args!("count={}{kind}", s.count));
                    for w in s.waiters.drain(..) {
                        w.wake();
                    }
                }),
            );
        });
    }
}

impl EventWaiter for SimEventFd {
    async fn wait(&self) -> u64 {
        poll_fn(|cx| {
            let mut s = self.state.borrow_mut();
            if s.count > 0 || s.spurious {
                let n = std::mem::take(&mut s.count);
                s.spurious = false;
                self.ctx.sync_acquire(&s.edge);
                Poll::Ready(n)
            } else {
                if !s.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    s.waiters.push(cx.waker().clone());
                }
                Poll::Pending
            }
        })
        .await
    }

    fn try_take(&self) -> u64 {
        let mut s = self.state.borrow_mut();
        let n = std::mem::take(&mut s.count);
        if n > 0 {
            self.ctx.sync_acquire(&s.edge);
        }
        n
    }
}
