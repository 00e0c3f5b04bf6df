//! Kernel state shared by the executor and every actor handle: virtual clock, event queue,
//! decision source, trace, buggify, memory, actor table and parked-waiter registry.
//!
//! Model. Time is virtual nanoseconds. It advances by `step_ns` per scheduling step (a step is a
//! slice of CPU work) and jumps to the next event when nothing is runnable. Nothing here reads a
//! wall clock, OS randomness or an OS thread; every choice is drawn from `ds`.

use crate::buggify::{Buggify, SiteKey};
use crate::decision::DecisionSource;
use crate::event_queue::EventQueue;
use crate::memory::Memory;
use crate::trace::Trace;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Waker;

/// An actor: a simulated thread, task or device, run as an async future.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ActorId(pub u32);

impl ActorId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

pub(crate) type ActorFuture = Pin<Box<dyn Future<Output = ()>>>;

/// A callback run by the kernel when its event comes due.
pub type EventFn = Box<dyn FnOnce(&mut Kernel)>;

pub(crate) enum Event {
    Wake(Waker),
    Call(EventFn),
}

pub(crate) struct ActorInfo {
    pub name: Rc<str>,
    pub daemon: bool,
    pub finished: bool,
    pub joiners: Vec<Waker>,
    /// Happens-before edge from the spawner (acquired at the first step) and, once finished,
    /// from the actor's last step (acquired by joiners).
    pub edge: Option<crate::memory::SyncToken>,
    /// Consecutive steps this actor ran and stayed runnable without a progress mark.
    pub since_progress: u64,
}

/// Predicate over memory that says a parked waiter should not be parked.
pub type WaitCondition = Rc<dyn Fn(&Memory) -> bool>;

pub(crate) struct WaitEntry {
    pub actor: ActorId,
    pub label: String,
    pub holds: WaitCondition,
}

/// Kernel tunables, derived per run and recorded in the replay file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelOptions {
    /// Virtual nanoseconds one scheduling step costs.
    pub step_ns: u64,
    /// The run stops with `EndReason::StepLimit` after this many steps.
    pub max_steps: u64,
    /// The run stops with `EndReason::TimeLimit` past this virtual time.
    pub time_limit_ns: u64,
    /// An actor that runs this many steps in a row without parking or marking progress is
    /// reported as making no progress, and the run stops.
    pub progress_budget: u64,
    /// Scheduler steps after which a buffered store is drained by force (tso).
    pub max_buffer_age: u64,
    /// Whether buggify sites may fire in this run.
    pub buggify: bool,
    /// Keep every trace line (not only the hash).
    pub capture_trace: bool,
    /// Record the sequence of scheduling picks (for the replay strategy).
    pub record_schedule: bool,
}

impl Default for KernelOptions {
    fn default() -> Self {
        Self {
            step_ns: 50,
            max_steps: 2_000_000,
            time_limit_ns: 60_000_000_000,
            progress_budget: 100_000,
            max_buffer_age: 256,
            buggify: false,
            capture_trace: false,
            record_schedule: false,
        }
    }
}

impl KernelOptions {
    /// `name=value` pairs, for reports and replay files.
    pub fn describe(&self) -> Vec<(String, String)> {
        vec![
            ("step_ns".into(), self.step_ns.to_string()),
            ("max_steps".into(), self.max_steps.to_string()),
            ("time_limit_ns".into(), self.time_limit_ns.to_string()),
            ("progress_budget".into(), self.progress_budget.to_string()),
            ("max_buffer_age".into(), self.max_buffer_age.to_string()),
            ("buggify".into(), self.buggify.to_string()),
        ]
    }
}

pub struct Kernel {
    pub(crate) now: u64,
    pub(crate) step: u64,
    pub(crate) ds: DecisionSource,
    pub(crate) trace: Trace,
    pub(crate) buggify: Buggify,
    pub(crate) mem: Memory,
    pub(crate) events: EventQueue<Event>,
    pub(crate) actors: Vec<ActorInfo>,
    pub(crate) current: Option<ActorId>,
    pub(crate) spawned: Vec<(ActorId, ActorFuture)>,
    pub(crate) waits: BTreeMap<u64, WaitEntry>,
    pub(crate) next_wait: u64,
    pub(crate) yield_hints: Vec<ActorId>,
    pub(crate) opts: KernelOptions,
    /// A sub-actor label for trace lines (a guest kernel thread inside a vCPU actor).
    pub(crate) label: Option<Rc<str>>,
}

impl Kernel {
    pub(crate) fn new(ds: DecisionSource, mem: Memory, opts: KernelOptions) -> Self {
        let mut mem = mem;
        mem.set_max_buffer_age(opts.max_buffer_age);
        Self {
            now: 0,
            step: 0,
            ds,
            trace: Trace::new(opts.capture_trace),
            buggify: Buggify::new(opts.buggify),
            mem,
            events: EventQueue::default(),
            actors: Vec::new(),
            current: None,
            spawned: Vec::new(),
            waits: BTreeMap::new(),
            next_wait: 0,
            yield_hints: Vec::new(),
            opts,
            label: None,
        }
    }

    /// Virtual time in nanoseconds.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Scheduling steps taken so far.
    pub fn step(&self) -> u64 {
        self.step
    }

    pub fn decisions(&mut self) -> &mut DecisionSource {
        &mut self.ds
    }

    pub fn memory(&self) -> &Memory {
        &self.mem
    }

    pub fn memory_mut(&mut self) -> &mut Memory {
        &mut self.mem
    }

    pub fn options(&self) -> &KernelOptions {
        &self.opts
    }

    /// The actor being polled, if any.
    pub fn current(&self) -> Option<ActorId> {
        self.current
    }

    pub fn actor_name(&self, id: ActorId) -> &str {
        self.actors.get(id.index()).map_or("?", |a| &a.name)
    }

    fn current_name(&self) -> Rc<str> {
        match (self.current, &self.label) {
            (Some(id), Some(label)) => {
                Rc::from(format!("{}/{label}", self.actors[id.index()].name))
            }
            (Some(id), None) => self.actors[id.index()].name.clone(),
            (None, _) => Rc::from("kernel"),
        }
    }

    /// Labels the current actor's trace lines with a sub-actor (e.g. a guest kernel thread
    /// multiplexed on a vCPU actor) until cleared or the actor's step ends.
    pub fn set_label(&mut self, label: Option<Rc<str>>) {
        self.label = label;
    }

    /// Records a trace line for the current actor (or `kernel` outside any actor).
    pub fn trace(&mut self, event: &str, details: fmt::Arguments<'_>) {
        let name = self.current_name();
        self.trace.record(self.now, &name, event, details);
    }

    /// Records a trace line under an explicit label (a device, a link, an oracle).
    pub fn trace_as(&mut self, who: &str, event: &str, details: fmt::Arguments<'_>) {
        self.trace.record(self.now, who, event, details);
    }

    /// Schedules `f` to run at virtual time `at` (clamped to now).
    pub fn schedule_at(&mut self, at: u64, f: EventFn) {
        self.events.push(at.max(self.now), Event::Call(f));
    }

    /// Wakes `waker` at virtual time `at`.
    pub fn wake_at(&mut self, at: u64, waker: Waker) {
        self.events.push(at.max(self.now), Event::Wake(waker));
    }

    /// Reaches a buggify site; see `buggify.rs`.
    pub fn buggify_at(&mut self, site: SiteKey) -> bool {
        let draw = self.buggify.reach(site, &mut self.ds);
        if draw.fires {
            self.trace("buggify", format_args!("site={site}"));
        }
        draw.fires
    }

    pub(crate) fn spawn(&mut self, name: &str, daemon: bool, fut: ActorFuture) -> ActorId {
        let id = ActorId(self.actors.len() as u32);
        // Names are the second field of a trace line, so they must be one word.
        let name: String = name
            .chars()
            .map(|c| if c.is_whitespace() { '_' } else { c })
            .collect();
        self.trace_as(
            "kernel",
            "spawn",
            format_args!("{name}{}", if daemon { " daemon" } else { "" }),
        );
        // Spawning synchronises-with the start of the new actor (C11 thread creation; on x86 a
        // serializing system call).
        let spawner_edge = self.current.map(|me| self.mem.sync_release(me.index()));
        self.actors.push(ActorInfo {
            name: Rc::from(name.as_str()),
            daemon,
            finished: false,
            joiners: Vec::new(),
            since_progress: 0,
            edge: spawner_edge,
        });
        self.spawned.push((id, fut));
        id
    }

    pub(crate) fn register_wait(&mut self, label: String, holds: WaitCondition) -> u64 {
        let actor = self.current.unwrap_or(ActorId(u32::MAX));
        let key = self.next_wait;
        self.next_wait += 1;
        self.waits.insert(
            key,
            WaitEntry {
                actor,
                label,
                holds,
            },
        );
        key
    }

    pub(crate) fn unregister_wait(&mut self, key: u64) {
        self.waits.remove(&key);
    }

    pub(crate) fn mark_progress(&mut self) {
        if let Some(id) = self.current {
            self.actors[id.index()].since_progress = 0;
        }
    }
}
