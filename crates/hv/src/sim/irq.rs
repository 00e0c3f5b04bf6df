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

use crate::sim::{Signalled, has, planted, signal};
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
    /// Signals raised so far, and the number of the last one delivered.
    sent: u64,
    last_delivered: u64,
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
        signal(
            &self.ctx,
            &self.name,
            "irq",
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

    /// A real interrupt advances the epoch (with the raiser's edge); a spurious wake-up releases
    /// every halted thread without one.
    fn deliver(&mut self, edge: Option<&SyncToken>, signal: u64) -> String {
        match edge {
            Some(edge) => {
                self.edge.merge(edge);
                self.epoch += 1;
                self.last_delivered = signal;
                format!("epoch={}", self.epoch)
            }
            None => {
                self.spurious += 1;
                format!("epoch={} spurious", self.epoch)
            }
        }
    }

    fn take_waiters(&mut self) -> Vec<Waker> {
        std::mem::take(&mut self.waiters)
    }
}

impl IrqWaiter for SimIrqLine {
    fn ticket(&self) -> u64 {
        // Observing a delivered interrupt synchronises with its raise, as taking it would.
        let s = self.state.borrow();
        self.ctx.sync_acquire(&s.edge);
        s.epoch
    }

    /// Halts until an interrupt newer than `ticket` (or a spurious wake-up). Halting is a trace
    /// line (`park`), and so is waking (`wake`, naming the interrupt that woke it: `by=`).
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
        let mut parked = false;
        poll_fn(|cx| {
            let mut s = self.state.borrow_mut();
            if s.epoch > ticket || s.spurious > spurious_at_arm {
                self.ctx.sync_acquire(&s.edge);
                if parked {
                    let name = &self.name;
                    if s.epoch > ticket {
                        let by = s.last_delivered;
                        self.ctx.trace(
                            "wake",
                            format_args!("{name} epoch={} by={name}#{by}", s.epoch),
                        );
                    } else {
                        self.ctx
                            .trace("wake", format_args!("{name} epoch={} spurious", s.epoch));
                    }
                }
                Poll::Ready(())
            } else {
                if !s.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    s.waiters.push(cx.waker().clone());
                }
                if !parked {
                    parked = true;
                    self.ctx
                        .trace("park", format_args!("{} ticket={ticket}", self.name));
                }
                Poll::Pending
            }
        })
        .await;
    }
}
