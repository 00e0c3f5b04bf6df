//! The single-threaded executor: runs actors (async futures) one scheduling step at a time.
//! A step is either polling one runnable actor up to its next scheduling point, or draining one
//! buffered store (tso). The strategy picks among them; when nothing is schedulable the clock
//! jumps to the next event. Actors are woken only by kernel events (timers, other actors'
//! actions, event callbacks), never by an OS thread.

use crate::ctx::Ctx;
use crate::decision::DecisionSource;
use crate::kernel::{ActorFuture, ActorId, At, Event, Kernel, KernelOptions};
use crate::memory::{MemMode, Memory};
use crate::region::Region;
use crate::strategy::{Schedulable, Strategy};
use std::cell::RefCell;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// Why a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// Nothing runnable, no buffered stores, no pending events.
    Quiescent,
    /// Every non-daemon actor finished and the run was told to stop then.
    AllFinished,
    StepLimit,
    TimeLimit,
    /// An actor exceeded its progress budget (a livelock or a spin on a dead peer).
    NoProgress {
        actor: String,
        steps: u64,
    },
}

/// A parked waiter whose wake condition held at quiescence: a lost wake-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LostWakeup {
    pub actor: String,
    pub label: String,
    /// When the waiter registered (just before it parked).
    pub parked: At,
    /// When its condition became true for good: the first point a watcher could tell the
    /// waiter should be awake.
    pub since: At,
}

/// An actor whose future panicked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActorPanic {
    pub actor: String,
    pub message: String,
    /// The panic's trace line.
    pub at: At,
}

/// What the kernel saw of a run. Oracles turn this into a verdict.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    pub end: EndReason,
    /// Non-daemon actors that had not finished when the run ended.
    pub unfinished: Vec<String>,
    pub lost_wakeups: Vec<LostWakeup>,
    /// Actors whose future panicked, with the panic message.
    pub panics: Vec<ActorPanic>,
    pub steps: u64,
    pub now_ns: u64,
    /// Where the run ended (the last trace line).
    pub end_at: At,
}

impl RunOutcome {
    /// Liveness problems the kernel itself can see.
    pub fn liveness_failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for w in &self.lost_wakeups {
            out.push(format!(
                "lost wake-up: {} parked on '{}' while its condition holds",
                w.actor, w.label
            ));
        }
        match &self.end {
            EndReason::NoProgress { actor, steps } => out.push(format!(
                "no progress: {actor} ran {steps} steps without progress"
            )),
            EndReason::StepLimit => {
                out.push(format!("step limit reached after {} steps", self.steps))
            }
            EndReason::TimeLimit => out.push(format!("time limit reached at t={}", self.now_ns)),
            EndReason::Quiescent if !self.unfinished.is_empty() => out.push(format!(
                "deadlock: quiescent with {} blocked",
                self.unfinished.join(", ")
            )),
            _ => {}
        }
        out
    }
}

thread_local! {
    static POLLING_ACTOR: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// The memory model of this thread's last finished run, reset and reused by the next `Sim`
    /// (a sweep worker runs seed after seed on one thread).
    static SPARE_MEMORY: RefCell<Option<Memory>> = const { RefCell::new(None) };
}

/// Drops what this thread kept from earlier runs for reuse, so the next run starts from fresh
/// allocations (tests compare the two).
pub fn clear_spares() {
    SPARE_MEMORY.with(|s| s.borrow_mut().take());
}

/// Installs a panic hook that stays silent for panics inside an actor (the executor catches
/// them and the run reports them as violations) and prints every other panic as usual.
pub fn install_quiet_actor_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !POLLING_ACTOR.with(std::cell::Cell::get) {
            default(info);
        }
    }));
}

#[derive(Default)]
struct WakeQueue {
    woken: Mutex<Vec<u32>>,
}

struct ActorWaker {
    id: u32,
    queue: Arc<WakeQueue>,
}

impl Wake for ActorWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.queue
            .woken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(self.id);
    }
}

struct Slot {
    future: Option<ActorFuture>,
    waker: Waker,
    ready: bool,
}

/// A simulated world: kernel, actors and a strategy.
pub struct Sim {
    kernel: Rc<RefCell<Kernel>>,
    slots: Vec<Slot>,
    /// Runnable actors, ascending: the strategy's choice set whenever no store is buffered.
    ready: Vec<Schedulable>,
    queue: Arc<WakeQueue>,
    /// The woken list taken out of `queue` (swapped, so neither side reallocates).
    woken: Vec<u32>,
    strategy: Box<dyn Strategy>,
    schedulables: Vec<Schedulable>,
    schedule: Vec<Schedulable>,
    stop_when_done: bool,
    panics: Vec<ActorPanic>,
    /// Set when the actor just polled exceeded its progress budget.
    over_budget: Option<(String, u64)>,
}

impl Sim {
    pub fn new(
        ds: DecisionSource,
        strategy: Box<dyn Strategy>,
        mode: MemMode,
        opts: KernelOptions,
    ) -> Self {
        let mem = match SPARE_MEMORY.with(|s| s.borrow_mut().take()) {
            Some(mut m) => {
                m.reset(mode);
                m
            }
            None => Memory::new(mode, 0),
        };
        let kernel = Kernel::new(ds, mem, opts);
        Self {
            kernel: Rc::new(RefCell::new(kernel)),
            slots: Vec::new(),
            ready: Vec::new(),
            queue: Arc::default(),
            woken: Vec::new(),
            strategy,
            schedulables: Vec::new(),
            schedule: Vec::new(),
            stop_when_done: false,
            panics: Vec::new(),
            over_budget: None,
        }
    }

    pub fn ctx(&self) -> Ctx {
        Ctx {
            kernel: self.kernel.clone(),
        }
    }

    /// Stop as soon as every non-daemon actor has finished, instead of running to quiescence.
    pub fn stop_when_done(&mut self, stop: bool) {
        self.stop_when_done = stop;
    }

    /// Allocates a zeroed region of shared memory.
    pub fn alloc_region(&mut self, name: &str, len: u64) -> Region {
        Region::alloc(&self.ctx(), name, len)
    }

    pub fn spawn(&mut self, name: &str, fut: impl Future<Output = ()> + 'static) -> ActorId {
        self.ctx().spawn(name, fut)
    }

    pub fn spawn_daemon(&mut self, name: &str, fut: impl Future<Output = ()> + 'static) -> ActorId {
        self.ctx().spawn_daemon(name, fut)
    }

    pub fn with_kernel<R>(&self, f: impl FnOnce(&mut Kernel) -> R) -> R {
        f(&mut self.kernel.borrow_mut())
    }

    /// Scheduling picks made so far (when `record_schedule` is on).
    pub fn schedule(&self) -> &[Schedulable] {
        &self.schedule
    }

    fn adopt_spawned(&mut self) {
        let spawned = std::mem::take(&mut self.kernel.borrow_mut().spawned);
        for (id, future) in spawned {
            debug_assert_eq!(id.index(), self.slots.len());
            let waker = Waker::from(Arc::new(ActorWaker {
                id: id.0,
                queue: self.queue.clone(),
            }));
            self.slots.push(Slot {
                future: Some(future),
                waker,
                ready: false,
            });
            self.make_ready(id);
        }
    }

    fn make_ready(&mut self, id: ActorId) {
        let slot = &mut self.slots[id.index()];
        if !slot.ready && slot.future.is_some() {
            slot.ready = true;
            if let Err(pos) = self.ready.binary_search(&Schedulable::Actor(id)) {
                self.ready.insert(pos, Schedulable::Actor(id));
            }
        }
    }

    fn unready(&mut self, id: ActorId) {
        if let Ok(pos) = self.ready.binary_search(&Schedulable::Actor(id)) {
            self.ready.remove(pos);
        }
    }

    fn collect_wakes(&mut self) {
        let mut woken = std::mem::take(&mut self.woken);
        std::mem::swap(
            &mut *self.queue.woken.lock().unwrap_or_else(|e| e.into_inner()),
            &mut woken,
        );
        for id in woken.drain(..) {
            if (id as usize) < self.slots.len() {
                self.make_ready(ActorId(id));
            }
        }
        self.woken = woken;
    }

    fn fire_due_events(&mut self) {
        loop {
            let mut k = self.kernel.borrow_mut();
            let now = k.now;
            let Some((_, event)) = k.events.pop_due(now) else {
                break;
            };
            match event {
                Event::Wake(w) => {
                    drop(k);
                    w.wake();
                }
                Event::Call(f) => f(&mut k),
            }
        }
    }

    fn all_done(&self) -> bool {
        let k = self.kernel.borrow();
        k.actors.iter().all(|a| a.finished || a.daemon)
    }

    fn poll_actor(&mut self, id: ActorId) {
        // The actor stays in `ready` while it runs; it leaves after its step unless it was woken
        // again (most steps end in a yield, which wakes it: no removal and re-insertion then).
        let slot = &mut self.slots[id.index()];
        slot.ready = false;
        let Some(mut future) = slot.future.take() else {
            self.unready(id);
            return;
        };
        let waker = slot.waker.clone();
        {
            let mut k = self.kernel.borrow_mut();
            k.current = Some(id);
            // First step of a spawned actor: acquire the spawner's edge.
            if let Some(edge) = k.actors[id.index()].edge.take() {
                k.mem.sync_acquire(id.index(), &edge);
            }
        }
        let mut cx = Context::from_waker(&waker);
        POLLING_ACTOR.with(|p| p.set(true));
        let result = catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx)));
        POLLING_ACTOR.with(|p| p.set(false));
        let mut k = self.kernel.borrow_mut();
        k.current = None;
        k.label = None;
        match result {
            Ok(Poll::Pending) => {
                self.slots[id.index()].future = Some(future);
            }
            Ok(Poll::Ready(())) => {
                k.actors[id.index()].finished = true;
                // Finishing synchronises-with every join of this actor.
                let edge = k.mem.exit_edge(id.index());
                k.actors[id.index()].edge = Some(edge);
                let name = k.actors[id.index()].name.clone();
                k.trace_as(&name, "exit", format_args!(""));
                for w in std::mem::take(&mut k.actors[id.index()].joiners) {
                    w.wake();
                }
            }
            Err(payload) => {
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic payload".to_string());
                k.actors[id.index()].finished = true;
                let name = k.actors[id.index()].name.clone();
                k.trace_as(&name, "panic", format_args!("{msg}"));
                self.panics.push(ActorPanic {
                    actor: name.to_string(),
                    message: msg,
                    at: k.position(),
                });
                for w in std::mem::take(&mut k.actors[id.index()].joiners) {
                    w.wake();
                }
            }
        }
        let hints = std::mem::take(&mut k.yield_hints);
        drop(k);
        for h in hints {
            self.strategy.yielded(h);
        }
        self.adopt_spawned();
        self.collect_wakes();
        // Progress accounting: an actor that is runnable again right after its step is busy.
        let still_ready = self.slots[id.index()].ready;
        if !still_ready {
            self.unready(id);
        }
        let mut k = self.kernel.borrow_mut();
        let budget = k.opts.progress_budget;
        if let Some(info) = k.actors.get_mut(id.index()) {
            info.since_progress = if still_ready {
                info.since_progress + 1
            } else {
                0
            };
            if info.since_progress > budget {
                self.over_budget = Some((info.name.to_string(), info.since_progress));
            }
        }
    }

    fn drain(&mut self, owner: ActorId, forced: bool) {
        let mut k = self.kernel.borrow_mut();
        if let Some(d) = k.mem.drain_one(owner.index()) {
            let e = crate::trace::MemEvent {
                op: crate::trace::MemOp::Drain,
                order: 0,
                note: 0,
                len: d.len as u32,
                addr: d.addr,
                a: u64::from(forced),
                b: 0,
                c: 0,
            };
            k.trace_mem(Some(owner), &e, |k| {
                let how = if forced { " forced" } else { "" };
                let place = k.place(d.addr, d.len as u64);
                if place.is_whole_field() {
                    format!("{place}{how}")
                } else {
                    format!("{place} len={}{how}", d.len)
                }
            });
        }
    }

    /// Runs until quiescence (or until every non-daemon actor is done, with `stop_when_done`),
    /// or until a limit is hit.
    pub fn run(&mut self) -> RunOutcome {
        let end = loop {
            self.adopt_spawned();
            self.fire_due_events();
            self.collect_wakes();
            self.kernel.borrow_mut().watch_waits();
            if self.stop_when_done && self.all_done() {
                break EndReason::AllFinished;
            }
            if let Some((actor, steps)) = self.over_budget.take() {
                break EndReason::NoProgress { actor, steps };
            }
            let (step, max_steps, overdue) = {
                let k = self.kernel.borrow();
                (k.step, k.opts.max_steps, k.mem.overdue(k.step))
            };
            if let Some(owner) = overdue {
                self.drain(ActorId(owner as u32), true);
                continue;
            }
            let drains_pending = self.kernel.borrow().mem.has_pending_stores();
            if drains_pending {
                self.schedulables.clear();
                self.schedulables.extend_from_slice(&self.ready);
                let k = self.kernel.borrow();
                self.schedulables.extend(
                    k.mem
                        .actors_with_pending_stores()
                        .map(|a| Schedulable::Drain(ActorId(a as u32))),
                );
            }
            let choices: &[Schedulable] = if drains_pending {
                &self.schedulables
            } else {
                &self.ready
            };
            if choices.is_empty() {
                let mut k = self.kernel.borrow_mut();
                match k.events.peek_time() {
                    Some(t) if t > k.opts.time_limit_ns => {
                        k.now = k.opts.time_limit_ns;
                        break EndReason::TimeLimit;
                    }
                    Some(t) => {
                        k.now = k.now.max(t);
                        continue;
                    }
                    None => break EndReason::Quiescent,
                }
            }
            if step >= max_steps {
                break EndReason::StepLimit;
            }
            let pick = {
                let mut k = self.kernel.borrow_mut();
                let k = &mut *k;
                let i = self.strategy.pick(choices, k.step, &mut k.ds);
                k.step += 1;
                k.now += k.opts.step_ns;
                if k.now > k.opts.time_limit_ns {
                    break EndReason::TimeLimit;
                }
                if k.opts.record_schedule {
                    self.schedule.push(choices[i]);
                }
                choices[i]
            };
            match pick {
                Schedulable::Actor(id) => self.poll_actor(id),
                Schedulable::Drain(owner) => self.drain(owner, false),
            }
        };
        self.finish(end)
    }

    fn finish(&mut self, end: EndReason) -> RunOutcome {
        let k = self.kernel.borrow();
        let unfinished = k
            .actors
            .iter()
            .filter(|a| !a.finished && !a.daemon)
            .map(|a| a.name.to_string())
            .collect();
        let end_at = k.position();
        let lost_wakeups = if end == EndReason::Quiescent {
            k.waits
                .values()
                .filter(|w| (w.holds)(&k.mem))
                .map(|w| LostWakeup {
                    actor: w.actor.to_string(),
                    label: w.label.clone(),
                    parked: w.registered,
                    since: w.holds_since.unwrap_or(end_at),
                })
                .collect()
        } else {
            Vec::new()
        };
        RunOutcome {
            end,
            unfinished,
            lost_wakeups,
            panics: self.panics.clone(),
            steps: k.step,
            now_ns: k.now,
            end_at,
        }
    }

    /// Trace hash so far.
    pub fn trace_hash(&self) -> u64 {
        self.kernel.borrow().trace.hash()
    }

    pub fn trace_events(&self) -> u64 {
        self.kernel.borrow().trace.events()
    }

    pub fn take_trace_lines(&mut self) -> Option<Vec<String>> {
        self.kernel.borrow_mut().trace.take_lines()
    }

    /// What the run observed (coverage, goals, faults), taken out of the kernel.
    pub fn take_observations(&mut self) -> crate::observe::Observations {
        std::mem::take(&mut self.kernel.borrow_mut().observed)
    }

    /// The recorded decision stream so far.
    pub fn recorded_decisions(&self) -> Vec<u8> {
        self.kernel.borrow().ds.recorded().to_vec()
    }

    pub fn decision_count(&self) -> u64 {
        self.kernel.borrow().ds.draws()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        // Drop actor futures before the kernel so guards inside them can still reach it.
        for slot in &mut self.slots {
            slot.future = None;
        }
        // Keep the memory model's allocations for this thread's next run.
        if let Ok(mut k) = self.kernel.try_borrow_mut() {
            let mem = std::mem::replace(&mut k.mem, Memory::new(MemMode::Sc, 0));
            SPARE_MEMORY.with(|s| *s.borrow_mut() = Some(mem));
        }
    }
}
