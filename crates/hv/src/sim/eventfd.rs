//! A guest→host doorbell with eventfd counter semantics (an ioeventfd in KVM).
//!
//! Model: `ring` is serializing for the ringer and delivers after a seeded latency; delivery adds
//! one to the counter and wakes every waiter; `wait` returns and clears the count, so rings that
//! land before a wait coalesce into one wake. Faults: latency, and (under buggify) an extra
//! spurious wake-up on top of the delivery: `wait` returns 0 and the caller must re-check.

use crate::sim::{Signalled, signal};
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
    /// Signals sent so far, and the number of the last one delivered.
    sent: u64,
    last_delivered: u64,
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
        self.state.borrow_mut().rings += 1;
        signal(
            &self.ctx,
            &self.name,
            "ring",
            self.base_latency_ns,
            &self.state,
        );
    }
}

impl Signalled for State {
    fn next_signal(&mut self) -> u64 {
        self.sent += 1;
        self.sent
    }

    /// A real ring adds one (with the ringer's edge); a spurious wake-up makes `wait` return 0.
    fn deliver(&mut self, edge: Option<&SyncToken>, signal: u64) -> String {
        match edge {
            Some(edge) => {
                self.edge.merge(edge);
                self.count += 1;
                self.last_delivered = signal;
                self.deliveries += 1;
                format!("count={}", self.count)
            }
            None => {
                self.spurious = true;
                format!("count={} spurious", self.count)
            }
        }
    }

    fn take_waiters(&mut self) -> Vec<Waker> {
        std::mem::take(&mut self.waiters)
    }
}

impl EventWaiter for SimEventFd {
    /// Waits for the count. Parking is a trace line (`park`), and so is waking (`wake`, naming
    /// the last ring delivered: `by=`).
    async fn wait(&self) -> u64 {
        let mut parked = false;
        poll_fn(|cx| {
            let mut s = self.state.borrow_mut();
            if s.count > 0 || s.spurious {
                let n = std::mem::take(&mut s.count);
                s.spurious = false;
                self.ctx.sync_acquire(&s.edge);
                if parked {
                    let name = &self.name;
                    if n > 0 {
                        let by = s.last_delivered;
                        self.ctx
                            .trace("wake", format_args!("{name} count={n} by={name}#{by}"));
                    } else {
                        self.ctx.trace("wake", format_args!("{name} spurious"));
                    }
                }
                Poll::Ready(n)
            } else {
                if !s.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    s.waiters.push(cx.waker().clone());
                }
                if !parked {
                    parked = true;
                    self.ctx.trace("park", format_args!("{}", self.name));
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
