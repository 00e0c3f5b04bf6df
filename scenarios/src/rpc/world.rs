//! The RPC workload, in the spirit of mirage/capnp-rpc's fuzzer: each step one action, drawn
//! from the decision source, by one vat: deliver a queued message, call a held capability
//! (perhaps with a capability argument, perhaps introducing a third vat's capability), pipeline
//! on an unresolved answer, answer a call (results, a promise, an exception or a tail call),
//! release, finish or cancel, bootstrap; plus the faults of the network (`net.rs`).
//!
//! The application objects are probes: each call carries (reference, sequence number) and the
//! object records its arrival with the E-order oracle, which keeps the shadow reference graph.
//! At the end the network is drained, every call answered and everything given back, and the
//! wire checker judges quiescence.

use super::Links;
use super::net::Net;
use super::waits::Waits;
use captp::probe::{CALL_METHOD, PROBE_INTERFACE_ID, ProbeCall, ProbeReturn};
use captp::wire::AnyValue;
use captp::{AnswerRef, CallId, CapRef, Vat, VatConfig, VatEvent, VatId};
use models::Violation;
use models::rpc::{EOrder, ShadowId};
use simkit::Ctx;
use std::collections::BTreeMap;

/// Capability and answer slots per vat (overwriting a slot gives back its old entry).
const SLOTS: usize = 6;

struct Held {
    cap: CapRef,
    reference: u64,
    next_seq: u64,
    shadow: ShadowId,
}

struct HeldAnswer {
    answer: AnswerRef,
    /// Where its results hold a capability: `[]` for a bootstrap, `[0]` (`ProbeReturn.cap`)
    /// for a call.
    path: &'static [u16],
    /// The shadow of the capability at `path`.
    cap_shadow: ShadowId,
}

/// The capability in `Probe.call` results.
const CALL_CAP: &[u16] = &[0];
/// The capability in bootstrap results.
const BOOTSTRAP_CAP: &[u16] = &[];

struct Owed {
    call: CallId,
    /// How many calls reached the object before this one (`ProbeReturn.n`).
    earlier: u64,
    arg: Option<(CapRef, ShadowId)>,
    answer_shadow: ShadowId,
}

#[derive(Clone, Copy)]
struct CallInfo {
    target: ShadowId,
    answer: ShadowId,
    arg: Option<ShadowId>,
}

#[derive(Default)]
struct App {
    caps: Vec<Option<Held>>,
    answers: Vec<Option<HeldAnswer>>,
    owed: Vec<Owed>,
    next_object: u64,
    /// The slot this vat called last: applications call the same capability again and
    /// again, and E-order is about such runs of calls.
    last_called: Option<usize>,
}

/// What a workload step does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    NewObject,
    Deliver,
    Call,
    Pipeline,
    Answer,
    Release,
    Finish,
    Bootstrap,
    Introduce,
    Echo,
    Fault,
}

impl Action {
    /// Every action, with its base weight (out of 100).
    pub const BASE: [(Action, u64); 11] = [
        (Action::NewObject, 4),
        (Action::Deliver, 36),
        (Action::Call, 14),
        (Action::Pipeline, 8),
        (Action::Answer, 14),
        (Action::Release, 5),
        (Action::Finish, 5),
        (Action::Bootstrap, 7),
        (Action::Introduce, 4),
        (Action::Echo, 3),
        (Action::Fault, 3),
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::NewObject => "new_object",
            Action::Deliver => "deliver",
            Action::Call => "call",
            Action::Pipeline => "pipeline",
            Action::Answer => "answer",
            Action::Release => "release",
            Action::Finish => "finish",
            Action::Bootstrap => "bootstrap",
            Action::Introduce => "introduce",
            Action::Echo => "echo",
            Action::Fault => "fault",
        }
    }
}

/// The run's action weights. Each run scales the base weights by its own factors (swarm
/// testing: a run heavy on pipelining and light on delivery reaches states that the average
/// mix rarely does).
#[derive(Clone, Debug)]
pub struct ActionMix {
    weights: Vec<(Action, u64)>,
}

impl ActionMix {
    /// `factor(action)` scales the base weight of each action.
    pub fn new(mut factor: impl FnMut(Action) -> u64) -> Self {
        let weights = Action::BASE
            .iter()
            .map(|&(a, w)| (a, w * factor(a)))
            .collect();
        ActionMix { weights }
    }

    pub fn total(&self) -> u64 {
        self.weights.iter().map(|&(_, w)| w).sum::<u64>().max(1)
    }

    /// The action at position `r` (in `0..total()`).
    pub fn pick(&self, mut r: u64) -> Action {
        for &(a, w) in &self.weights {
            if r < w {
                return a;
            }
            r -= w;
        }
        Action::Deliver
    }
}

pub struct World {
    pub net: Net,
    mix: ActionMix,
    /// Each direction's share of the deliveries.
    speeds: BTreeMap<(VatId, VatId), u64>,
    apps: Vec<App>,
    eorder: EOrder,
    calls: BTreeMap<(u64, u64), CallInfo>,
    /// Calls that reached each object so far.
    arrivals: BTreeMap<u64, u64>,
    next_reference: u64,
    /// What waits for what, to keep promise cycles out of the workload.
    waits: Waits,
    pub violations: Vec<Violation>,
    pub steps: u64,
    now: u64,
}

/// `Probe.call` params: call `seq` on reference `ref_id`, with the argument (if any) as
/// cap-table entry 0.
fn call_params(ref_id: u64, seq: u64, has_arg: bool) -> AnyValue {
    ProbeCall {
        ref_id,
        seq,
        arg: has_arg.then_some(0),
    }
    .to_value()
}

/// `Probe.call` results: `n` earlier arrivals, and the returned capability as entry 0.
fn call_results(n: u64) -> AnyValue {
    ProbeReturn { n, cap: Some(0) }.to_value()
}

fn object_id(vat: VatId, n: u64) -> u64 {
    (u64::from(vat) << 32) | n
}

impl World {
    /// `speeds` gives each direction's share of the deliveries (a direction missing from it
    /// has share 1).
    pub fn new(
        configs: Vec<VatConfig>,
        links: Links,
        max_delay: u64,
        mix: ActionMix,
        speeds: BTreeMap<(VatId, VatId), u64>,
    ) -> Self {
        let n = configs.len();
        let mut w = World {
            speeds,
            net: Net::new(configs, links, max_delay),
            mix,
            apps: (0..n).map(|_| App::default()).collect(),
            eorder: EOrder::new(),
            calls: BTreeMap::new(),
            arrivals: BTreeMap::new(),
            next_reference: 1,
            waits: Waits::default(),
            violations: Vec::new(),
            steps: 0,
            now: 0,
        };
        for v in 0..n {
            w.reset_app(v as VatId);
        }
        w
    }

    fn reset_app(&mut self, v: VatId) {
        let app = &mut self.apps[v as usize];
        app.caps = (0..SLOTS).map(|_| None).collect();
        app.answers = (0..SLOTS).map(|_| None).collect();
        app.owed.clear();
        app.last_called = None;
        // Object 0 of each vat is its bootstrap probe.
        app.next_object = app.next_object.max(1);
        self.net.vats[v as usize].set_bootstrap(object_id(v, 0));
    }

    fn vat(&mut self, v: VatId) -> &mut Vat {
        &mut self.net.vats[v as usize]
    }

    fn new_reference(&mut self) -> u64 {
        let r = self.next_reference;
        self.next_reference += 1;
        r
    }

    /// A capability to a fresh probe object of vat `v`'s own, and its shadow.
    fn fresh_object(&mut self, v: VatId) -> (CapRef, ShadowId) {
        let app = &mut self.apps[v as usize];
        let object = object_id(v, app.next_object);
        app.next_object += 1;
        let shadow = self.eorder.object(object);
        (self.vat(v).local_cap(object), shadow)
    }

    /// Stores a capability in a slot, releasing whatever was there.
    fn store_cap(&mut self, v: VatId, slot: usize, cap: CapRef, shadow: ShadowId) {
        let reference = self.new_reference();
        let old = self.apps[v as usize].caps[slot].replace(Held {
            cap,
            reference,
            next_seq: 0,
            shadow,
        });
        if let Some(old) = old {
            self.vat(v).release(old.cap);
        }
    }

    fn store_answer(
        &mut self,
        v: VatId,
        slot: usize,
        answer: AnswerRef,
        path: &'static [u16],
        cap_shadow: ShadowId,
    ) {
        let old = self.apps[v as usize].answers[slot].replace(HeldAnswer {
            answer,
            path,
            cap_shadow,
        });
        if let Some(old) = old {
            self.vat(v).finish(old.answer);
        }
    }

    /// Hands every vat's events to its application.
    fn drain_events(&mut self, ctx: Option<&Ctx>) {
        for v in 0..self.apps.len() {
            let v = v as VatId;
            for ev in self.vat(v).take_events() {
                match ev {
                    VatEvent::Call {
                        call,
                        object,
                        content,
                        mut caps,
                        ..
                    } => {
                        let Ok(ProbeCall {
                            ref_id: reference,
                            seq,
                            ..
                        }) = ProbeCall::from_value(&content)
                        else {
                            self.violations.push(Violation::new(
                                "rpc-app",
                                format!("vat {v}: a call arrived with a malformed payload"),
                            ));
                            for c in caps {
                                self.vat(v).release(c);
                            }
                            let _ = self.vat(v).return_exception(call, "malformed");
                            continue;
                        };
                        let Some(info) = self.calls.get(&(reference, seq)).copied() else {
                            self.violations.push(Violation::new(
                                "e-order",
                                format!("call #{seq} on reference {reference} was never made"),
                            ));
                            continue;
                        };
                        self.eorder.arrived(reference, seq, info.target, object);
                        let count = self.arrivals.entry(object).or_default();
                        let earlier = *count;
                        *count += 1;
                        let arg = match (caps.is_empty(), info.arg) {
                            (false, Some(shadow)) => Some((caps.remove(0), shadow)),
                            _ => None,
                        };
                        // Half the time the object keeps a copy of the capability it was
                        // given, and its vat may call it later: capabilities passed along are
                        // what carry calls through a third vat.
                        if let (Some(ctx), Some((cap, shadow))) = (ctx, &arg)
                            && ctx.chance(1, 2)
                        {
                            let shadow = *shadow;
                            let copy = self.net.vats[v as usize].clone_cap(cap);
                            let slot = ctx.choose(SLOTS as u64) as usize;
                            self.store_cap(v, slot, copy, shadow);
                        }
                        for c in caps {
                            self.vat(v).release(c);
                        }
                        self.apps[v as usize].owed.push(Owed {
                            call,
                            earlier,
                            arg,
                            answer_shadow: info.answer,
                        });
                    }
                    VatEvent::Cancelled { .. } | VatEvent::Disconnected { .. } => {}
                }
            }
        }
    }

    fn collect(&mut self, ctx: Option<&Ctx>) {
        self.drain_events(ctx);
        let now = self.now;
        match ctx {
            Some(ctx) => self.net.collect(now, |max| ctx.choose(max + 1)),
            None => self.net.collect(now, |_| 0),
        }
    }

    fn trace(&mut self, ctx: &Ctx) {
        for line in self.net.log.drain(..) {
            ctx.trace("rpc", format_args!("{line}"));
        }
    }

    /// Makes a call from vat `v` on the cap in `slot`, with an optional argument.
    fn call(&mut self, v: VatId, slot: usize, arg: Option<usize>, answer_slot: usize) {
        let answer_shadow = self.eorder.unknown();
        let app = &mut self.apps[v as usize];
        let Some(held) = app.caps[slot].as_mut() else {
            return;
        };
        let (reference, seq, target) = (held.reference, held.next_seq, held.shadow);
        held.next_seq += 1;
        app.last_called = Some(slot);
        let arg_shadow = arg.and_then(|a| app.caps[a].as_ref().map(|h| h.shadow));
        // A fresh answer: nothing waits for it yet, so this closes no cycle.
        self.waits.add(answer_shadow, target);
        self.calls.insert(
            (reference, seq),
            CallInfo {
                target,
                answer: answer_shadow,
                arg: arg_shadow,
            },
        );
        let vat = &mut self.net.vats[v as usize];
        let app = &self.apps[v as usize];
        let Some(held) = app.caps[slot].as_ref() else {
            return;
        };
        let argcap = arg.and_then(|a| app.caps[a].as_ref().map(|h| &h.cap));
        let caps: Vec<&CapRef> = argcap.into_iter().collect();
        let answer = vat.call(
            &held.cap,
            PROBE_INTERFACE_ID,
            CALL_METHOD,
            call_params(reference, seq, !caps.is_empty()),
            &caps,
        );
        self.store_answer(v, answer_slot, answer, CALL_CAP, answer_shadow);
    }

    /// Returns `cap` (given back after) as the capability in the results of `owed`, unless
    /// it is a promise waiting for that very answer (a cycle no vat would ever settle).
    fn return_cap(
        &mut self,
        v: VatId,
        owed: &Owed,
        results: AnyValue,
        cap: CapRef,
        shadow: ShadowId,
    ) -> Result<(), captp::ProtocolError> {
        let r = if self
            .waits
            .waits_for(&mut self.eorder, shadow, owed.answer_shadow)
        {
            self.vat(v)
                .return_exception(owed.call, "that capability waits for this answer")
        } else {
            self.eorder
                .unify(owed.answer_shadow, shadow, "returned capability");
            self.vat(v).return_results(owed.call, results, &[&cap])
        };
        self.vat(v).release(cap);
        r
    }

    /// Answers the oldest (or a chosen) call owed by vat `v`.
    ///
    /// `how` picks the kind of answer; `defer` (in `0..4`) turns half of the "return the
    /// argument" answers into "return a promise for the argument", and picks whether such a
    /// promise is handed on to a fresh helper object or to the capability in `slot`.
    fn answer(&mut self, v: VatId, index: usize, how: u64, slot: usize, defer: u64) {
        let app = &mut self.apps[v as usize];
        if app.owed.is_empty() {
            return;
        }
        let mut owed = app.owed.remove(index % app.owed.len());
        let how = if how == 0 && defer >= 2 && owed.arg.is_some() {
            5
        } else {
            how
        };
        let helper = defer.is_multiple_of(2);
        let results = call_results(owed.earlier);
        // Only "return the argument" and "answer with a promise" keep it; every other answer
        // gives it back first.
        let arg = match (how, owed.arg.take()) {
            (0 | 1 | 5, arg) => arg,
            (_, Some((cap, _))) => {
                self.vat(v).release(cap);
                None
            }
            (_, None) => None,
        };
        let result = match how {
            // Return the argument, or a fresh probe.
            0 | 1 => {
                let (cap, shadow) = match arg {
                    Some(arg) => arg,
                    None => self.fresh_object(v),
                };
                self.return_cap(v, &owed, results, cap, shadow)
            }
            // Return a capability the vat holds.
            2 => {
                let held = self.apps[v as usize].caps[slot]
                    .as_ref()
                    .map(|h| (h.shadow, self.net.vats[v as usize].clone_cap(&h.cap)));
                match held {
                    Some((shadow, cap)) => self.return_cap(v, &owed, results, cap, shadow),
                    None => self
                        .vat(v)
                        .return_exception(owed.call, "no capability to return"),
                }
            }
            // Return the results of another answer (a promise).
            // (Only a call's: a bootstrap's results are not `Probe.call` results.)
            3 => match self.apps[v as usize].answers[slot]
                .as_ref()
                .filter(|a| a.path == CALL_CAP)
                .map(|a| a.cap_shadow)
            {
                Some(followed)
                    if !self
                        .waits
                        .follow(&mut self.eorder, owed.answer_shadow, followed) =>
                {
                    self.vat(v)
                        .return_exception(owed.call, "that answer waits for this one")
                }
                Some(_) => {
                    let Some(a) = self.apps[v as usize].answers[slot].as_ref() else {
                        unreachable!("the slot was just read");
                    };
                    self.eorder
                        .unify(owed.answer_shadow, a.cap_shadow, "returned answer");
                    self.net.vats[v as usize].return_answer(owed.call, &a.answer)
                }
                None => self
                    .vat(v)
                    .return_exception(owed.call, "no answer to return"),
            },
            // A tail call on a held capability.
            4 => match self.apps[v as usize].caps[slot].as_ref().map(|h| h.shadow) {
                Some(followed)
                    if !self
                        .waits
                        .follow(&mut self.eorder, owed.answer_shadow, followed) =>
                {
                    self.vat(v)
                        .return_exception(owed.call, "that capability waits for this answer")
                }
                Some(_) => {
                    let Some(h) = self.apps[v as usize].caps[slot].as_mut() else {
                        unreachable!("the slot was just read");
                    };
                    let (reference, seq) = (h.reference, h.next_seq);
                    h.next_seq += 1;
                    self.calls.insert(
                        (reference, seq),
                        CallInfo {
                            target: h.shadow,
                            answer: owed.answer_shadow,
                            arg: None,
                        },
                    );
                    let h = &*h;
                    self.net.vats[v as usize].tail_call(
                        owed.call,
                        &h.cap,
                        PROBE_INTERFACE_ID,
                        CALL_METHOD,
                        call_params(reference, seq, false),
                        &[],
                    )
                }
                None => self
                    .vat(v)
                    .return_exception(owed.call, "no capability to call"),
            },
            // Answer with a promise: hand the work (and the argument) on to the capability in
            // `slot`, or to a fresh helper object of this vat's own, and return a pipeline on
            // that call's answer. The caller holds a promise this vat hosts, which settles
            // when the handed-on call does: often into a capability of the caller's own, after
            // the caller has already pipelined calls through it (mirage/capnp-rpc#78's shape,
            // and #59's when the handed-on call goes to a third vat).
            5 => {
                let (arg_slot, answer_slot) = ((slot + 1) % SLOTS, (slot + 2) % SLOTS);
                if helper || self.apps[v as usize].caps[slot].is_none() {
                    let (cap, shadow) = self.fresh_object(v);
                    self.store_cap(v, slot, cap, shadow);
                }
                let has_arg = arg.is_some();
                if let Some((cap, shadow)) = arg {
                    self.store_cap(v, arg_slot, cap, shadow);
                }
                self.call(v, slot, has_arg.then_some(arg_slot), answer_slot);
                match self.apps[v as usize].answers[answer_slot].as_ref() {
                    Some(a) => {
                        let shadow = a.cap_shadow;
                        let promise = self.net.vats[v as usize].pipeline(&a.answer, a.path);
                        self.return_cap(v, &owed, results, promise, shadow)
                    }
                    None => self
                        .vat(v)
                        .return_exception(owed.call, "no call to hand the work on to"),
                }
            }
            _ => self.vat(v).return_exception(owed.call, "probe refused"),
        };
        if let Err(e) = result {
            self.violations.push(Violation::new(
                "rpc-app",
                format!("vat {v}: answering a call failed: {e}"),
            ));
        }
    }

    /// One workload step.
    pub fn step(&mut self, ctx: &Ctx, faults: bool) {
        self.steps += 1;
        let n = self.apps.len() as u64;
        let v = ctx.choose(n) as VatId;
        let slot = ctx.choose(SLOTS as u64) as usize;
        let slot2 = ctx.choose(SLOTS as u64) as usize;
        match self.mix.pick(ctx.choose(self.mix.total())) {
            Action::NewObject => {
                // A fresh object of this vat's own, to pass around: what comes back to its
                // host through a peer is what needs the loopback embargo.
                let (cap, shadow) = self.fresh_object(v);
                self.store_cap(v, slot, cap, shadow);
            }
            Action::Deliver => {
                // A direction's chance is its share: a slow direction lags behind the others.
                let ready = self.net.ready(self.now);
                let speed = |k: &(VatId, VatId)| self.speeds.get(k).copied().unwrap_or(1);
                let total: u64 = ready.iter().map(speed).sum();
                if total > 0 {
                    let mut r = ctx.choose(total);
                    for k in &ready {
                        if r < speed(k) {
                            self.net.deliver(k.0, k.1);
                            break;
                        }
                        r -= speed(k);
                    }
                }
            }
            Action::Call => {
                // One to three calls in a row on one reference, half the time the one this
                // vat called last: E-order is about such runs.
                let slot = match self.apps[v as usize].last_called {
                    Some(last) if ctx.chance(1, 2) => last,
                    _ => slot,
                };
                let arg = ctx.chance(1, 2).then_some(slot2).filter(|&s| s != slot);
                let burst = 1 + ctx.choose(3) as usize;
                for i in 0..burst {
                    self.call(v, slot, arg, (slot2 + i) % SLOTS);
                }
            }
            Action::Pipeline => {
                let app = &self.apps[v as usize];
                if let Some(a) = app.answers[slot].as_ref() {
                    let shadow = a.cap_shadow;
                    let cap = self.net.vats[v as usize].pipeline(&a.answer, a.path);
                    self.store_cap(v, slot2, cap, shadow);
                    // Calls pipelined at once are the ones a resolution can overtake.
                    for i in 0..ctx.choose(3) as usize {
                        self.call(v, slot2, None, (slot2 + 1 + i) % SLOTS);
                    }
                }
            }
            Action::Answer => {
                // One to three calls owed by this vat, each picked from all it owes (calls
                // are made faster than one a step; answering only the oldest would leave the
                // recent ones, where the races are, to the final drain).
                for _ in 0..1 + ctx.choose(3) {
                    let owed = self.apps[v as usize].owed.len() as u64;
                    if owed == 0 {
                        break;
                    }
                    let index = ctx.choose(owed) as usize;
                    // Returning the argument half the time: that is how capabilities travel
                    // back to where they live.
                    let how = if ctx.chance(1, 2) { 0 } else { ctx.choose(7) };
                    self.answer(v, index, how, slot, ctx.choose(4));
                }
            }
            Action::Release => {
                if let Some(old) = self.apps[v as usize].caps[slot].take() {
                    self.vat(v).release(old.cap);
                }
            }
            Action::Finish => {
                if let Some(old) = self.apps[v as usize].answers[slot].take() {
                    self.vat(v).finish(old.answer);
                }
            }
            Action::Bootstrap => {
                let peers = self.net.vats[v as usize].peers();
                if !peers.is_empty() {
                    let peer = peers[ctx.choose(peers.len() as u64) as usize];
                    let answer = self.vat(v).bootstrap(peer);
                    let shadow = self.eorder.object(object_id(peer, 0));
                    let cap = self.vat(v).pipeline(&answer, &[]);
                    self.store_cap(v, slot, cap, shadow);
                    // Keep the bootstrap answer too (its results hold the capability).
                    self.store_answer(v, slot2, answer, BOOTSTRAP_CAP, shadow);
                }
            }
            Action::Echo => {
                // The loopback pattern in one step: send a fresh object of ours out, pipeline
                // on the answer at once (the callee may well hand it straight back, or a
                // promise for it), call through the pipeline before the answer comes, and
                // hold the pipelined capability where other actions call or pass it on.
                let (cap, shadow) = self.fresh_object(v);
                let arg_slot = (slot + 1) % SLOTS;
                let answer_slot = (slot + 2) % SLOTS;
                let pipelined_slot = (slot + 3) % SLOTS;
                self.store_cap(v, arg_slot, cap, shadow);
                self.call(v, slot, Some(arg_slot), answer_slot);
                if let Some(a) = self.apps[v as usize].answers[answer_slot].as_ref() {
                    let shadow = a.cap_shadow;
                    let cap = self.net.vats[v as usize].pipeline(&a.answer, a.path);
                    self.store_cap(v, pipelined_slot, cap, shadow);
                    for i in 0..ctx.choose(3) as usize {
                        self.call(v, pipelined_slot, None, (slot + 4 + i) % SLOTS);
                    }
                }
            }
            Action::Introduce => {
                // Introduce: pass a capability from one peer to another.
                let arg = (slot + 1) % SLOTS;
                self.call(v, slot, Some(arg), slot2);
            }
            Action::Fault => {
                if faults && ctx.chance(1, 4) {
                    if ctx.chance(1, 3) {
                        self.net.restart(v);
                        self.reset_app(v);
                    } else {
                        let peers = self.net.vats[v as usize].peers();
                        if !peers.is_empty() {
                            let peer = peers[ctx.choose(peers.len() as u64) as usize];
                            self.net.disconnect(v, peer);
                        }
                    }
                }
            }
        }
        self.collect(Some(ctx));
        self.trace(ctx);
    }

    /// Advances simulated time by one step, or to the next deliverable message.
    pub fn tick(&mut self, ns: u64) {
        self.now += ns;
    }

    /// Drains the network and answers every call, then gives back everything, and drains
    /// again. Returns false if it could not get quiet.
    pub fn quiesce(&mut self, ctx: &Ctx) -> bool {
        for phase in 0..2 {
            if phase == 1 {
                for v in 0..self.apps.len() {
                    let v = v as VatId;
                    for slot in 0..SLOTS {
                        if let Some(h) = self.apps[v as usize].caps[slot].take() {
                            self.vat(v).release(h.cap);
                        }
                        if let Some(a) = self.apps[v as usize].answers[slot].take() {
                            self.vat(v).finish(a.answer);
                        }
                    }
                }
                self.collect(None);
            }
            let mut rounds = 0;
            loop {
                rounds += 1;
                if rounds > 100_000 {
                    return false;
                }
                let ready = self.net.ready(self.now);
                if let Some(&(from, to)) = ready.first() {
                    self.net.deliver(from, to);
                    self.collect(None);
                    continue;
                }
                if let Some(v) = (0..self.apps.len()).find(|&v| !self.apps[v].owed.is_empty()) {
                    // Answer with a fresh probe so that nothing is left to pipeline on.
                    self.answer(v as VatId, 0, 0, 0, 0);
                    self.collect(None);
                    continue;
                }
                match self.net.next_ready_at() {
                    Some(t) => self.now = self.now.max(t),
                    None => break,
                }
            }
            self.trace(ctx);
        }
        true
    }

    /// Every oracle's verdict.
    pub fn verdict(&mut self, quiet: bool) -> Vec<Violation> {
        let mut v = std::mem::take(&mut self.violations);
        for e in &self.net.decode_errors {
            v.push(Violation::new("rpc-wire", e.clone()));
        }
        v.extend(self.net.checker.violations().iter().cloned());
        v.extend(self.eorder.violations().iter().cloned());
        if !quiet {
            v.push(Violation::new(
                "rpc-quiescence",
                "the network never went quiet (a message loop)",
            ));
        } else if v.is_empty() {
            v.extend(self.net.checker.check_quiescent());
            // Beyond the wire: the engines must have given back every node and record.
            for vat in &self.net.vats {
                let (nodes, results, calls) = vat.live_counts();
                if nodes + results + calls + vat.pending_handoffs() > 0 {
                    v.push(Violation::new(
                        "rpc-quiescence",
                        format!(
                            "vat {} still tracks {nodes} capabilities, {results} results, \
                             {calls} unanswered calls and {} handoffs after everything was \
                             given back",
                            vat.id(),
                            vat.pending_handoffs()
                        ),
                    ));
                }
            }
        }
        v
    }

    pub fn arrivals(&self) -> u64 {
        self.eorder.arrivals()
    }
}
