//! Blocking primitives that carry happens-before, for components written on the kernel:
//! [`Notify`] (park and unpark with a permit) and [`Mutex`]. Both are scheduling points and
//! trace lines; what one actor did before a `notify` or an unlock is visible to the actor that
//! wakes or locks next, in every memory mode (the kernel's release/acquire edge, as a real
//! futex or lock gives).
//!
//! A waiter can state the condition under which it must not stay parked
//! ([`Notify::wait_guarded`]), usually over typed fields (`crate::atomic`): the liveness oracle
//! then reports a lost wake-up if the run ends with it parked while that condition holds.

use crate::ctx::Ctx;
use crate::kernel::WaitCondition;
use crate::memory::{Memory, SyncToken};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::ops::{Deref, DerefMut};
use std::rc::Rc;
use std::task::{Poll, Waker};

#[derive(Default)]
struct NotifyState {
    permit: bool,
    waiters: VecDeque<Waker>,
    edge: SyncToken,
}

/// Park and unpark: `notify` leaves one permit (permits do not pile up, as with
/// `std::thread::unpark`) and wakes one waiter; `wait` takes the permit, waiting for one if
/// there is none.
#[derive(Clone)]
pub struct Notify {
    ctx: Ctx,
    name: Rc<str>,
    state: Rc<RefCell<NotifyState>>,
}

impl Notify {
    pub fn new(ctx: &Ctx, name: &str) -> Self {
        Notify {
            ctx: ctx.clone(),
            name: Rc::from(name),
            state: Rc::default(),
        }
    }

    /// Leaves a permit (publishing what this actor did before) and wakes one waiter.
    pub async fn notify(&self) {
        self.ctx.yield_now().await;
        let edge = self.ctx.sync_release();
        let waker = {
            let mut s = self.state.borrow_mut();
            s.permit = true;
            s.edge.merge(&edge);
            s.waiters.pop_front()
        };
        self.ctx.trace("notify", format_args!("{}", self.name));
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Takes the permit, parking until there is one. Parking is a trace line (`park`), and so
    /// is taking the permit (`wake`).
    pub async fn wait(&self) {
        self.ctx.yield_now().await;
        let mut parked = false;
        poll_fn(|cx| {
            let mut s = self.state.borrow_mut();
            if std::mem::take(&mut s.permit) {
                self.ctx.sync_acquire(&s.edge);
                Poll::Ready(())
            } else {
                if !s.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    s.waiters.push_back(cx.waker().clone());
                }
                if !parked {
                    parked = true;
                    self.ctx.trace("park", format_args!("{}", self.name));
                }
                Poll::Pending
            }
        })
        .await;
        self.ctx.trace("wake", format_args!("{}", self.name));
    }

    /// As [`Notify::wait`], declaring that this actor must not stay parked while `holds` is
    /// true of committed memory (`label` names the waiter in the liveness report).
    pub async fn wait_guarded(&self, label: &str, holds: impl Fn(&Memory) -> bool + 'static) {
        let condition: WaitCondition = Rc::new(holds);
        let _guard = self.ctx.park_guard(label, condition);
        self.wait().await;
    }
}

struct MutexState<T> {
    value: Option<T>,
    waiters: VecDeque<Waker>,
    edge: SyncToken,
}

/// A lock around a value: `lock` waits for the lock and acquires what the last holder did; the
/// guard releases it when dropped.
pub struct Mutex<T> {
    ctx: Ctx,
    name: Rc<str>,
    state: Rc<RefCell<MutexState<T>>>,
}

impl<T> Clone for Mutex<T> {
    fn clone(&self) -> Self {
        Mutex {
            ctx: self.ctx.clone(),
            name: self.name.clone(),
            state: self.state.clone(),
        }
    }
}

impl<T> Mutex<T> {
    pub fn new(ctx: &Ctx, name: &str, value: T) -> Self {
        Mutex {
            ctx: ctx.clone(),
            name: Rc::from(name),
            state: Rc::new(RefCell::new(MutexState {
                value: Some(value),
                waiters: VecDeque::new(),
                edge: SyncToken::default(),
            })),
        }
    }

    pub async fn lock(&self) -> MutexGuard<T> {
        self.ctx.yield_now().await;
        let value = poll_fn(|cx| {
            let mut s = self.state.borrow_mut();
            match s.value.take() {
                Some(v) => {
                    self.ctx.sync_acquire(&s.edge);
                    Poll::Ready(v)
                }
                None => {
                    if !s.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                        s.waiters.push_back(cx.waker().clone());
                    }
                    Poll::Pending
                }
            }
        })
        .await;
        self.ctx.trace("lock", format_args!("{}", self.name));
        MutexGuard {
            lock: self.clone(),
            value: Some(value),
        }
    }

    /// Whether the lock is held (for oracles and wait conditions).
    pub fn is_locked(&self) -> bool {
        self.state.borrow().value.is_none()
    }
}

pub struct MutexGuard<T> {
    lock: Mutex<T>,
    value: Option<T>,
}

impl<T> Deref for MutexGuard<T> {
    type Target = T;
    fn deref(&self) -> &T {
        match &self.value {
            Some(v) => v,
            None => unreachable!("a guard holds its value until it is dropped"),
        }
    }
}

impl<T> DerefMut for MutexGuard<T> {
    fn deref_mut(&mut self) -> &mut T {
        match &mut self.value {
            Some(v) => v,
            None => unreachable!("a guard holds its value until it is dropped"),
        }
    }
}

impl<T> Drop for MutexGuard<T> {
    fn drop(&mut self) {
        let edge = self.lock.ctx.sync_release();
        let waker = {
            let mut s = self.lock.state.borrow_mut();
            s.value = self.value.take();
            s.edge = edge;
            s.waiters.pop_front()
        };
        self.lock
            .ctx
            .trace("unlock", format_args!("{}", self.lock.name));
        if let Some(w) = waker {
            w.wake();
        }
    }
}
