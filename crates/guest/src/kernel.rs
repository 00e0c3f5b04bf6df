//! Kernel threads on one vCPU.
//!
//! The vCPU runs a cooperative run queue: the current thread keeps the CPU across its shared-memory
//! accesses (each is still a point where the host can interleave with the vCPU), and the CPU
//! switches threads when the current one yields, parks (waiting for an interrupt) or finishes, or
//! when the timer preempts it (`VcpuHooks::preempt`, seeded in simulation). When no thread is
//! runnable the vCPU halts until a thread is woken. All threads share the vCPU's store buffer, as
//! on real hardware.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::task::Wake;
use alloc::vec::Vec;
use atomic_waker::AtomicWaker;
use core::cell::RefCell;
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Context, Poll, Waker};

/// What the vCPU needs from its platform.
pub trait VcpuHooks {
    /// At a scheduling point of the running thread while others are runnable: does the timer
    /// preempt it now?
    fn preempt(&self) -> bool;
    /// The thread about to run (for traces), or `None` when the vCPU leaves it.
    fn running(&self, name: Option<&str>);
    /// Ready when the VM is not paused; registers the waker otherwise.
    fn poll_runnable(&self, cx: &mut Context<'_>) -> Poll<()>;
}

struct ThreadWake {
    woken: AtomicBool,
    vcpu: Arc<AtomicWaker>,
}

impl Wake for ThreadWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.vcpu.wake();
    }
}

/// A kernel thread's body.
type ThreadFuture = Pin<Box<dyn Future<Output = ()>>>;

struct Thread {
    name: String,
    future: Option<ThreadFuture>,
    wake: Arc<ThreadWake>,
    waker: Waker,
    queued: bool,
}

#[derive(Default)]
struct State {
    threads: Vec<Thread>,
    run_queue: VecDeque<usize>,
    current: Option<usize>,
    yield_requested: bool,
    spawned: Vec<(String, ThreadFuture)>,
}

/// A handle kernel threads use to spawn threads and to yield the CPU.
#[derive(Clone)]
pub struct KernelHandle {
    state: Rc<RefCell<State>>,
    vcpu: Arc<AtomicWaker>,
}

impl KernelHandle {
    pub fn spawn(&self, name: &str, fut: impl Future<Output = ()> + 'static) {
        self.state
            .borrow_mut()
            .spawned
            .push((String::from(name), Box::pin(fut)));
        self.vcpu.wake();
    }

    /// Gives the CPU to the next runnable thread.
    pub async fn yield_now(&self) {
        let mut yielded = false;
        core::future::poll_fn(|cx| {
            if yielded {
                Poll::Ready(())
            } else {
                yielded = true;
                self.state.borrow_mut().yield_requested = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        })
        .await;
    }
}

/// The guest kernel on one vCPU.
pub struct GuestKernel<H> {
    hooks: H,
    handle: KernelHandle,
}

impl<H: VcpuHooks> GuestKernel<H> {
    pub fn new(hooks: H) -> Self {
        let handle = KernelHandle {
            state: Rc::default(),
            vcpu: Arc::new(AtomicWaker::new()),
        };
        Self { hooks, handle }
    }

    pub fn handle(&self) -> KernelHandle {
        self.handle.clone()
    }

    /// Runs the vCPU until every kernel thread has finished.
    pub async fn run(self) {
        core::future::poll_fn(|cx| self.poll_vcpu(cx)).await;
    }

    fn adopt(&self, st: &mut State) {
        for (name, future) in core::mem::take(&mut st.spawned) {
            let wake = Arc::new(ThreadWake {
                woken: AtomicBool::new(false),
                vcpu: self.handle.vcpu.clone(),
            });
            let waker = Waker::from(wake.clone());
            st.run_queue.push_back(st.threads.len());
            st.threads.push(Thread {
                name,
                future: Some(future),
                wake,
                waker,
                queued: true,
            });
        }
        for i in 0..st.threads.len() {
            let t = &mut st.threads[i];
            if t.future.is_some()
                && !t.queued
                && Some(i) != st.current
                && t.wake.woken.swap(false, Ordering::AcqRel)
            {
                t.queued = true;
                st.run_queue.push_back(i);
            }
        }
    }

    fn poll_vcpu(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.handle.vcpu.register(cx.waker());
        loop {
            if self.hooks.poll_runnable(cx).is_pending() {
                return Poll::Pending;
            }
            let (id, waker, mut future, name) = {
                let mut st = self.handle.state.borrow_mut();
                self.adopt(&mut st);
                if st.threads.iter().all(|t| t.future.is_none()) && st.spawned.is_empty() {
                    return Poll::Ready(());
                }
                let others = !st.run_queue.is_empty();
                let id = match st.current {
                    Some(cur) if others && self.hooks.preempt() => {
                        st.threads[cur].queued = true;
                        st.run_queue.push_back(cur);
                        st.run_queue.pop_front()
                    }
                    Some(cur) => Some(cur),
                    None => st.run_queue.pop_front(),
                };
                let Some(id) = id else {
                    // Nothing runnable: halt until a thread is woken.
                    self.hooks.running(None);
                    return Poll::Pending;
                };
                st.current = Some(id);
                let t = &mut st.threads[id];
                t.queued = false;
                t.wake.woken.store(false, Ordering::Release);
                let Some(future) = t.future.take() else {
                    st.current = None;
                    continue;
                };
                (id, t.waker.clone(), future, t.name.clone())
            };
            self.hooks.running(Some(&name));
            let mut tcx = Context::from_waker(&waker);
            let result = future.as_mut().poll(&mut tcx);
            let mut st = self.handle.state.borrow_mut();
            match result {
                Poll::Ready(()) => {
                    st.current = None;
                }
                Poll::Pending => {
                    st.threads[id].future = Some(future);
                    if st.threads[id].wake.woken.swap(false, Ordering::AcqRel) {
                        // Still runnable: a scheduling point (or an explicit yield).
                        if core::mem::take(&mut st.yield_requested) {
                            st.current = None;
                            st.threads[id].queued = true;
                            st.run_queue.push_back(id);
                        }
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    // Parked: switch to another thread.
                    st.current = None;
                    st.yield_requested = false;
                }
            }
        }
    }
}
