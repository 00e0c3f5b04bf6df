//! A guest→host doorbell with eventfd counter semantics (an ioeventfd in KVM).
//!
//! Model: `ring` is serializing for the ringer and delivers after a seeded latency; delivery adds
//! one to the counter and wakes every waiter; `wait` returns and clears the count, so rings that
//! land before a wait coalesce into one wake. Faults: latency, and (under buggify) a delivery
//! that is only a spurious wake-up: `wait` returns 0 and the caller must re-check.

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
        let spurious = self.ctx.buggify();
        self.ctx
            .trace("ring", format_args!("{} latency={latency}", self.name));
        self.state.borrow_mut().rings += 1;
        let (state, name) = (self.state.clone(), self.name.clone());
        self.ctx.with(|k| {
            let at = k.now() + latency;
            k.schedule_at(
                at,
                Box::new(move |k| {
                    let mut s = state.borrow_mut();
                    s.edge.merge(&edge);
                    if spurious {
                        s.spurious = true;
                    } else {
                        s.count += 1;
                        s.deliveries += 1;
                    }
                    k.trace_as(
                        &name,
                        "deliver",
                        format_args!(
                            "count={}{}",
                            s.count,
                            if spurious { " spurious" } else { "" }
                        ),
                    );
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
