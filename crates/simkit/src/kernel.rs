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
use crate::names::AddrNames;
use crate::observe::{Observations, actor_event_feature, actor_parts_event_feature, feature};
use crate::trace::{MemEvent, MemOp, Trace, fnv1a_of};
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
    /// Memory event kinds (bits by `MemOp`) whose coverage feature this actor, unlabelled, has
    /// already recorded in this run.
    pub covered: u16,
}

/// Where in a run something happened: the scheduling step, the virtual time, and the trace
/// line it points at (`event`, 0-based: line `event + 1` of the trace).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct At {
    pub step: u64,
    pub time_ns: u64,
    pub event: u64,
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "step {}, t={} ns, trace line {}",
            self.step,
            self.time_ns,
            self.event + 1
        )
    }
}

/// Predicate over memory that says a parked waiter should not be parked.
pub type WaitCondition = Rc<dyn Fn(&Memory) -> bool>;

pub(crate) struct WaitEntry {
    /// The waiter as trace lines name it (with its sub-actor label, e.g. `vcpu0/recv1`).
    pub actor: Rc<str>,
    pub label: String,
    pub holds: WaitCondition,
    /// When the waiter registered.
    pub registered: At,
    /// Since when its condition has held without a break, as last evaluated.
    pub holds_since: Option<At>,
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
    /// Memory commits when wait conditions were last evaluated, and whether a waiter registered
    /// since (see `watch_waits`).
    watched_commits: u64,
    waits_changed: bool,
    /// Names of regions and fields, for trace lines.
    pub(crate) names: AddrNames,
    pub(crate) yield_hints: Vec<ActorId>,
    pub(crate) opts: KernelOptions,
    /// A sub-actor label for trace lines (a guest kernel thread inside a vCPU actor).
    pub(crate) label: Option<Rc<str>>,
    /// Coverage, goals reached and faults fired (see `observe.rs`).
    pub(crate) observed: Observations,
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
            watched_commits: 0,
            waits_changed: false,
            names: AddrNames::default(),
            yield_hints: Vec::new(),
            opts,
            label: None,
            observed: Observations::default(),
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

    /// Where the run is now: this step, this time, the last trace line written.
    pub fn position(&self) -> At {
        At {
            step: self.step,
            time_ns: self.now,
            event: self.trace.events().saturating_sub(1),
        }
    }

    /// Trace lines written so far.
    pub fn trace_events(&self) -> u64 {
        self.trace.events()
    }

    /// Names `[addr, addr + len)` of shared memory for trace lines (see `names.rs`).
    pub fn name_field(&mut self, addr: u64, len: u64, name: &str) {
        self.names.field(addr, len, name);
    }

    /// How trace lines show an access of `len` bytes at absolute address `addr`.
    pub fn place(&self, addr: u64, len: u64) -> crate::names::Place {
        self.names.place(addr, len)
    }

    /// The actor being polled, if any.
    pub fn current(&self) -> Option<ActorId> {
        self.current
    }

    pub fn actor_name(&self, id: ActorId) -> &str {
        self.actors.get(id.index()).map_or("?", |a| &a.name)
    }

    pub(crate) fn current_name(&self) -> Rc<str> {
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
        self.observed.cover(actor_event_feature(&name, event));
        self.trace.record(self.now, &name, event, details);
    }

    /// Records a memory event of `who` (the current actor, or for a drain the store buffer's
    /// owner). Its line is built by `details` only when lines are kept.
    pub(crate) fn trace_mem(
        &mut self,
        who: Option<ActorId>,
        e: &MemEvent,
        details: impl FnOnce(&Kernel) -> String,
    ) {
        let drain = e.op == MemOp::Drain;
        let label = if drain { None } else { self.label.clone() };
        let bit = 1u16 << (e.op as u8);
        match (who, &label) {
            (Some(id), None) => {
                let info = &mut self.actors[id.index()];
                if info.covered & bit == 0 {
                    info.covered |= bit;
                    let suffix = if drain { ".sb" } else { "" };
                    let f = actor_parts_event_feature(&[&info.name, suffix], e.op.name());
                    self.observed.cover(f);
                }
            }
            (Some(id), Some(l)) => {
                let name = &self.actors[id.index()].name;
                let f = actor_parts_event_feature(&[name, "/", l], e.op.name());
                self.observed.cover(f);
            }
            (None, _) => self
                .observed
                .cover(actor_event_feature("kernel", e.op.name())),
        }
        let label_hash = label.as_deref().map_or(0, |l| fnv1a_of(l.as_bytes()));
        self.trace
            .record_mem(self.now, who.map_or(u32::MAX, |a| a.0), label_hash, e);
        if self.trace.capturing() {
            let name: String = match (who, drain) {
                (Some(id), true) => format!("{}.sb", self.actor_name(id)),
                _ => self.current_name().to_string(),
            };
            let d = details(self);
            let line = if d.is_empty() {
                format!("t={} {name} {}", self.now, e.op.name())
            } else {
                format!("t={} {name} {} {d}", self.now, e.op.name())
            };
            self.trace.push_line(line);
        }
    }

    /// Records a trace line under an explicit label (a device, a link, an oracle).
    pub fn trace_as(&mut self, who: &str, event: &str, details: fmt::Arguments<'_>) {
        self.observed.cover(actor_event_feature(who, event));
        self.trace.record(self.now, who, event, details);
    }

    /// Records that the run reached the abstract state `key` of `domain` (coverage).
    pub fn cover(&mut self, domain: &str, key: u64) {
        self.observed.cover(feature(domain, key));
    }

    /// Records that the run reached the sometimes-goal `goal`.
    pub fn reached(&mut self, goal: &'static str) {
        self.observed.reached(goal);
    }

    /// Declares the fault kind `kind` switched on in this run.
    pub fn arm_fault(&mut self, kind: &str) {
        self.observed.arm(kind);
    }

    /// Counts one firing of the fault kind `kind`.
    pub fn fault_fired(&mut self, kind: &str) {
        self.observed.fired(kind);
    }

    /// What the run observed so far.
    pub fn observations(&self) -> &Observations {
        &self.observed
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
        if draw.newly_enabled || draw.fires {
            let kind = format!("buggify {site}");
            if draw.fires {
                self.observed.fired(&kind);
            } else {
                self.observed.arm(&kind);
            }
        }
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
            covered: 0,
            edge: spawner_edge,
        });
        self.spawned.push((id, fut));
        id
    }

    pub(crate) fn register_wait(&mut self, label: String, holds: WaitCondition) -> u64 {
        let actor = self.current_name();
        let key = self.next_wait;
        self.next_wait += 1;
        let registered = self.position();
        self.waits.insert(
            key,
            WaitEntry {
                actor,
                label,
                holds,
                registered,
                holds_since: None,
            },
        );
        self.waits_changed = true;
        key
    }

    pub(crate) fn unregister_wait(&mut self, key: u64) {
        self.waits.remove(&key);
    }

    /// Re-evaluates every registered wait condition when committed memory changed (or a waiter
    /// registered) since the last look, and keeps since when each has held. A lost wake-up is
    /// then reported from the step its condition became true, not only from quiescence. Wait
    /// conditions are judged on committed memory, so between commits they cannot turn true.
    /// Reads only; draws nothing and writes no trace line.
    pub(crate) fn watch_waits(&mut self) {
        if self.waits.is_empty() {
            return;
        }
        let commits = self.mem.commits();
        if commits == self.watched_commits && !self.waits_changed {
            return;
        }
        self.watched_commits = commits;
        self.waits_changed = false;
        let here = self.position();
        let mem = &self.mem;
        for w in self.waits.values_mut() {
            if (w.holds)(mem) {
                w.holds_since.get_or_insert(here);
            } else {
                w.holds_since = None;
            }
        }
    }

    pub(crate) fn mark_progress(&mut self) {
        if let Some(id) = self.current {
            self.actors[id.index()].since_progress = 0;
        }
    }
}
