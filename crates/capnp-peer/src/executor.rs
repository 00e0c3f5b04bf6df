//! A tiny single-threaded, first-in-first-out executor.
//!
//! Tasks are polled in the order in which they were woken (a task spawned counts as woken), so
//! a run is a pure function of the driver's calls. No threads, no clock, no randomness: a waker
//! only appends its task's number to a queue that [`Executor::run_until_stalled`] drains.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

/// The number of a task, in spawn order.
pub(crate) type TaskId = u64;

#[derive(Default)]
struct ReadyQueue {
    order: VecDeque<TaskId>,
    queued: BTreeSet<TaskId>,
}

fn lock(ready: &Mutex<ReadyQueue>) -> MutexGuard<'_, ReadyQueue> {
    // Nothing panics while holding the lock, so it cannot be poisoned; take it anyway if it is.
    ready
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct TaskWaker {
    id: TaskId,
    ready: Arc<Mutex<ReadyQueue>>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let mut ready = lock(&self.ready);
        if ready.queued.insert(self.id) {
            ready.order.push_back(self.id);
        }
    }
}

struct Task {
    future: Pin<Box<dyn Future<Output = ()>>>,
    waker: Waker,
}

/// Owns `!Send` futures and polls them in wake order.
#[derive(Default)]
pub(crate) struct Executor {
    tasks: BTreeMap<TaskId, Task>,
    ready: Arc<Mutex<ReadyQueue>>,
    next_id: TaskId,
}

impl Executor {
    /// Adds a task; it is first polled by the next [`Executor::run_until_stalled`].
    pub(crate) fn spawn(&mut self, future: impl Future<Output = ()> + 'static) -> TaskId {
        let id = self.next_id;
        self.next_id += 1;
        let waker = Waker::from(Arc::new(TaskWaker {
            id,
            ready: Arc::clone(&self.ready),
        }));
        waker.wake_by_ref();
        self.tasks.insert(
            id,
            Task {
                future: Box::pin(future),
                waker,
            },
        );
        id
    }

    /// Drops a task that has not finished (cancelling it). Returns whether it was still there.
    pub(crate) fn cancel(&mut self, id: TaskId) -> bool {
        self.tasks.remove(&id).is_some()
    }

    /// Polls woken tasks, first woken first, until none is woken. Returns how many polls ran.
    pub(crate) fn run_until_stalled(&mut self) -> u64 {
        let mut polls = 0;
        loop {
            let next = {
                let mut ready = lock(&self.ready);
                let next = ready.order.pop_front();
                if let Some(id) = next {
                    ready.queued.remove(&id);
                }
                next
            };
            let Some(id) = next else {
                return polls;
            };
            let Some(task) = self.tasks.get_mut(&id) else {
                // Finished or cancelled after it was woken.
                continue;
            };
            polls += 1;
            let waker = task.waker.clone();
            let mut cx = Context::from_waker(&waker);
            if let Poll::Ready(()) = task.future.as_mut().poll(&mut cx) {
                self.tasks.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    #[test]
    fn tasks_run_in_spawn_order_and_cancelled_ones_never_run() {
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut exec = Executor::default();
        let mut ids = Vec::new();
        for i in 0..5u32 {
            let log = Rc::clone(&log);
            ids.push(exec.spawn(async move { log.borrow_mut().push(i) }));
        }
        assert!(exec.cancel(ids[2]));
        assert_eq!(exec.run_until_stalled(), 4);
        assert_eq!(*log.borrow(), vec![0, 1, 3, 4]);
        assert!(!exec.cancel(ids[0]));
    }
}
