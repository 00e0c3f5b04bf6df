//! Guest-internal synchronisation between kernel threads (no shared memory involved).

use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::task::{Poll, Waker};

/// Counts down to zero; waiters wake when it gets there.
#[derive(Clone)]
pub struct Latch {
    inner: Rc<RefCell<(u64, Vec<Waker>)>>,
}

impl Latch {
    pub fn new(count: u64) -> Self {
        Self {
            inner: Rc::new(RefCell::new((count, Vec::new()))),
        }
    }

    pub fn count_down(&self) {
        let mut s = self.inner.borrow_mut();
        s.0 = s.0.saturating_sub(1);
        if s.0 == 0 {
            for w in s.1.drain(..) {
                w.wake();
            }
        }
    }

    pub async fn wait(&self) {
        core::future::poll_fn(|cx| {
            let mut s = self.inner.borrow_mut();
            if s.0 == 0 {
                Poll::Ready(())
            } else {
                s.1.push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
    }
}

/// A lock for kernel threads sharing one object (e.g. one pipe end written by several threads).
pub struct Mutex<T> {
    value: RefCell<T>,
    state: RefCell<(bool, Vec<Waker>)>,
}

pub struct MutexGuard<'a, T> {
    lock: &'a Mutex<T>,
    value: core::cell::RefMut<'a, T>,
}

impl<T> Mutex<T> {
    pub fn new(value: T) -> Self {
        Self {
            value: RefCell::new(value),
            state: RefCell::new((false, Vec::new())),
        }
    }

    pub async fn lock(&self) -> MutexGuard<'_, T> {
        core::future::poll_fn(|cx| {
            let mut s = self.state.borrow_mut();
            if s.0 {
                s.1.push(cx.waker().clone());
                Poll::Pending
            } else {
                s.0 = true;
                Poll::Ready(())
            }
        })
        .await;
        MutexGuard {
            lock: self,
            value: self.value.borrow_mut(),
        }
    }
}

impl<T> core::ops::Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> core::ops::DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        let mut s = self.lock.state.borrow_mut();
        s.0 = false;
        for w in s.1.drain(..) {
            w.wake();
        }
    }
}
