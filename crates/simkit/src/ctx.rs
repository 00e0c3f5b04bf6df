//! `Ctx`: the handle an actor (or a component running inside one) uses to reach the kernel:
//! time, sleep, scheduling points, spawning, the trace, buggify, choices, parked-waiter
//! registration and shared memory. Cheap to clone; single-threaded by construction (`Rc`).

use crate::buggify::SiteKey;
use crate::kernel::{ActorId, Kernel, WaitCondition};
use crate::memory::{Memory, Ordering};
use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

#[derive(Clone)]
pub struct Ctx {
    pub(crate) kernel: Rc<RefCell<Kernel>>,
}

impl Ctx {
    /// Runs `f` with the kernel borrowed. Do not await inside; do not call back into `Ctx`.
    pub fn with<R>(&self, f: impl FnOnce(&mut Kernel) -> R) -> R {
        f(&mut self.kernel.borrow_mut())
    }

    pub fn now(&self) -> u64 {
        self.kernel.borrow().now
    }

    /// The actor currently running.
    pub fn me(&self) -> Option<ActorId> {
        self.kernel.borrow().current
    }

    /// A scheduling point: the actor stays runnable and the strategy decides who runs next.
    pub fn yield_now(&self) -> YieldNow {
        YieldNow { yielded: false }
    }

    /// A scheduling point in a spin loop: like `yield_now`, and it tells the strategy this actor
    /// is waiting on others (PCT lowers its priority so a spinner cannot starve its peer).
    pub fn spin_hint(&self) -> YieldNow {
        let mut k = self.kernel.borrow_mut();
        if let Some(me) = k.current {
            k.yield_hints.push(me);
        }
        YieldNow { yielded: false }
    }

    /// Sleeps for `ns` virtual nanoseconds.
    pub fn sleep(&self, ns: u64) -> Sleep {
        let deadline = self.now().saturating_add(ns);
        Sleep {
            ctx: self.clone(),
            deadline,
            armed: false,
        }
    }

    pub fn sleep_until(&self, deadline: u64) -> Sleep {
        Sleep {
            ctx: self.clone(),
            deadline,
            armed: false,
        }
    }

    /// Spawns an actor that the run waits for.
    pub fn spawn(&self, name: &str, fut: impl Future<Output = ()> + 'static) -> ActorId {
        self.kernel.borrow_mut().spawn(name, false, Box::pin(fut))
    }

    /// Spawns a daemon: an actor (a device, a server loop) the run does not wait for.
    pub fn spawn_daemon(&self, name: &str, fut: impl Future<Output = ()> + 'static) -> ActorId {
        self.kernel.borrow_mut().spawn(name, true, Box::pin(fut))
    }

    /// Waits for an actor to finish.
    pub fn join(&self, id: ActorId) -> Join {
        Join {
            ctx: self.clone(),
            id,
        }
    }

    /// Records a trace line for the current actor.
    pub fn trace(&self, event: &str, details: fmt::Arguments<'_>) {
        self.kernel.borrow_mut().trace(event, details);
    }

    /// FoundationDB-style BUGGIFY at the caller's source location.
    #[track_caller]
    pub fn buggify(&self) -> bool {
        let site = SiteKey::of(Location::caller());
        self.kernel.borrow_mut().buggify_at(site)
    }

    /// Coverage: the run reached the abstract state `key` of `domain` (see `observe.rs`).
    pub fn cover(&self, domain: &str, key: u64) {
        self.kernel.borrow_mut().cover(domain, key);
    }

    /// A sometimes-assertion: the run reached the state the scenario's goal `goal` names.
    pub fn reached(&self, goal: &'static str) {
        self.kernel.borrow_mut().reached(goal);
    }

    /// Declares the fault kind `kind` switched on in this run (so a sweep can tell a fault that
    /// never fired from one never armed).
    pub fn arm_fault(&self, kind: &str) {
        self.kernel.borrow_mut().arm_fault(kind);
    }

    /// Counts one firing of the fault kind `kind`.
    pub fn fault(&self, kind: &str) {
        self.kernel.borrow_mut().fault_fired(kind);
    }

    /// A value in `0..bound` from the decision source.
    pub fn choose(&self, bound: u64) -> u64 {
        self.kernel.borrow_mut().ds.choose(bound)
    }

    /// True with probability `num/den`, from the decision source.
    pub fn chance(&self, num: u64, den: u64) -> bool {
        self.kernel.borrow_mut().ds.chance(num, den)
    }

    /// Marks forward progress (resets the no-progress step budget of the current actor).
    pub fn progress(&self) {
        self.kernel.borrow_mut().mark_progress();
    }

    /// Registers that the current actor is about to park, and under which condition it must not
    /// stay parked. At quiescence the kernel reports every registered waiter whose condition
    /// holds (a lost wake-up). The registration ends when the guard is dropped.
    pub fn park_guard(&self, label: impl Into<String>, holds: WaitCondition) -> ParkGuard {
        let key = self.kernel.borrow_mut().register_wait(label.into(), holds);
        ParkGuard {
            ctx: self.clone(),
            key,
        }
    }

    /// A full or one-way fence by the current actor: a trace line, and a scheduling point in
    /// the `relaxed` mode only (see `Memory::fence_is_scheduling_point`).
    pub async fn fence(&self, order: Ordering) {
        let point = self.kernel.borrow().mem.fence_is_scheduling_point();
        if point {
            self.yield_now().await;
        }
        let mut k = self.kernel.borrow_mut();
        let actor = k.current.map_or(usize::MAX, ActorId::index);
        k.mem.fence(actor, order);
        let e = crate::trace::MemEvent {
            op: crate::trace::MemOp::Fence,
            order: crate::memory::order_code(order),
            note: 0,
            len: 0,
            addr: 0,
            a: 0,
            b: 0,
            c: 0,
        };
        let who = k.current;
        k.trace_mem(who, &e, |_| {
            format!("o={}", crate::memory::short_order(order))
        });
    }

    /// The signaller's side of a kernel-mediated signal (see `Memory::sync_release`). Not a
    /// scheduling point: call it where the signal is sent.
    pub fn sync_release(&self) -> crate::memory::SyncToken {
        let mut k = self.kernel.borrow_mut();
        let actor = k.current.map_or(usize::MAX, ActorId::index);
        k.mem.sync_release(actor)
    }

    /// The woken side of a kernel-mediated signal.
    pub fn sync_acquire(&self, token: &crate::memory::SyncToken) {
        let mut k = self.kernel.borrow_mut();
        let actor = k.current.map_or(usize::MAX, ActorId::index);
        k.mem.sync_acquire(actor, token);
    }

    /// Reads committed memory (what an outside observer sees), for oracles and wait conditions.
    pub fn peek<R>(&self, f: impl FnOnce(&Memory) -> R) -> R {
        f(&self.kernel.borrow().mem)
    }
}

pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            Poll::Ready(())
        } else {
            self.yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

pub struct Sleep {
    ctx: Ctx,
    deadline: u64,
    armed: bool,
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut k = self.ctx.kernel.borrow_mut();
        if k.now >= self.deadline {
            return Poll::Ready(());
        }
        if !self.armed {
            k.wake_at(self.deadline, cx.waker().clone());
            drop(k);
            self.armed = true;
        }
        Poll::Pending
    }
}

pub struct Join {
    ctx: Ctx,
    id: ActorId,
}

impl Future for Join {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut k = self.ctx.kernel.borrow_mut();
        match k.actors.get_mut(self.id.index()) {
            Some(a) if !a.finished => {
                a.joiners.push(cx.waker().clone());
                Poll::Pending
            }
            Some(a) => {
                let edge = a.edge.clone();
                if let (Some(edge), Some(me)) = (edge, k.current) {
                    k.mem.sync_join(me.index(), self.id.index(), &edge);
                }
                Poll::Ready(())
            }
            None => Poll::Ready(()),
        }
    }
}

/// Ends a parked-waiter registration when dropped.
pub struct ParkGuard {
    ctx: Ctx,
    key: u64,
}

impl Drop for ParkGuard {
    fn drop(&mut self) {
        if let Ok(mut k) = self.ctx.kernel.try_borrow_mut() {
            k.unregister_wait(self.key);
        }
    }
}
