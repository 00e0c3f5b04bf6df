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
