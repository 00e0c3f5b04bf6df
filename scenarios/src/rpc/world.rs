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
    /// The shadow of the capability at path `[0]` of its results.
    cap_shadow: ShadowId,
}

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
}

pub struct World {
    pub net: Net,
    apps: Vec<App>,
    eorder: EOrder,
    calls: BTreeMap<(u64, u64), CallInfo>,
    /// Calls that reached each object so far.
    arrivals: BTreeMap<u64, u64>,
    next_reference: u64,
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
    pub fn new(configs: Vec<VatConfig>, links: Links, max_delay: u64) -> Self {
        let n = configs.len();
        let mut w = World {
            net: Net::new(configs, links, max_delay),
            apps: (0..n).map(|_| App::default()).collect(),
            eorder: EOrder::new(),
            calls: BTreeMap::new(),
            arrivals: BTreeMap::new(),
            next_reference: 1,
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

    fn store_answer(&mut self, v: VatId, slot: usize, answer: AnswerRef, cap_shadow: ShadowId) {
        let old = self.apps[v as usize].answers[slot].replace(HeldAnswer { answer, cap_shadow });
        if let Some(old) = old {
            self.vat(v).finish(old.answer);
        }
    }

    /// Hands every vat's events to its application.
    fn drain_events(&mut self) {
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
        self.drain_events();
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
        let arg_shadow = arg.and_then(|a| app.caps[a].as_ref().map(|h| h.shadow));
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
        self.store_answer(v, answer_slot, answer, answer_shadow);
    }

    /// Answers the oldest (or a chosen) call owed by vat `v`.
    fn answer(&mut self, v: VatId, index: usize, how: u64, slot: usize) {
        let app = &mut self.apps[v as usize];
        if app.owed.is_empty() {
            return;
        }
        let owed = app.owed.remove(index % app.owed.len());
        let results = call_results(owed.earlier);
        // Only "return the argument" keeps it; every other answer gives it back first.
        let arg = match (how, owed.arg) {
            (0 | 1, arg) => arg,
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
                    None => {
                        let app = &mut self.apps[v as usize];
                        let object = object_id(v, app.next_object);
                        app.next_object += 1;
                        let shadow = self.eorder.object(object);
                        (self.vat(v).local_cap(object), shadow)
                    }
                };
                self.eorder
                    .unify(owed.answer_shadow, shadow, "returned capability");
                let r = self.vat(v).return_results(owed.call, results, &[&cap]);
                self.vat(v).release(cap);
                r
            }
            // Return a capability the vat holds.
            2 => {
                let held = self.apps[v as usize].caps[slot]
                    .as_ref()
                    .map(|h| (h.shadow, self.net.vats[v as usize].clone_cap(&h.cap)));
                match held {
                    Some((shadow, cap)) => {
                        self.eorder
                            .unify(owed.answer_shadow, shadow, "returned capability");
                        let r = self.vat(v).return_results(owed.call, results, &[&cap]);
                        self.vat(v).release(cap);
                        r
                    }
                    None => self
                        .vat(v)
                        .return_exception(owed.call, "no capability to return"),
                }
            }
            // Return the results of another answer (a promise).
            3 => match self.apps[v as usize].answers[slot].as_ref() {
                Some(a) => {
                    self.eorder
                        .unify(owed.answer_shadow, a.cap_shadow, "returned answer");
                    self.net.vats[v as usize].return_answer(owed.call, &a.answer)
                }
                None => self
                    .vat(v)
                    .return_exception(owed.call, "no answer to return"),
            },
            // A tail call on a held capability.
            4 => match self.apps[v as usize].caps[slot].as_mut() {
                Some(h) => {
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
        match ctx.choose(100) {
            0..=39 => {
                let ready = self.net.ready(self.now);
                if !ready.is_empty() {
                    let (from, to) = ready[ctx.choose(ready.len() as u64) as usize];
                    self.net.deliver(from, to);
                }
            }
            40..=53 => {
                let arg = ctx.chance(1, 3).then_some(slot2).filter(|&s| s != slot);
                self.call(v, slot, arg, slot2);
            }
            54..=61 => {
                let app = &self.apps[v as usize];
                if let Some(a) = app.answers[slot].as_ref() {
                    let shadow = a.cap_shadow;
                    let cap = self.net.vats[v as usize].pipeline(&a.answer, &[0]);
                    self.store_cap(v, slot2, cap, shadow);
                }
            }
            62..=75 => {
                let index = ctx.choose(4) as usize;
                let how = ctx.choose(6);
                self.answer(v, index, how, slot);
            }
            76..=80 => {
                if let Some(old) = self.apps[v as usize].caps[slot].take() {
                    self.vat(v).release(old.cap);
                }
            }
            81..=85 => {
                if let Some(old) = self.apps[v as usize].answers[slot].take() {
                    self.vat(v).finish(old.answer);
                }
            }
            86..=92 => {
                let peers = self.net.vats[v as usize].peers();
                if !peers.is_empty() {
                    let peer = peers[ctx.choose(peers.len() as u64) as usize];
                    let answer = self.vat(v).bootstrap(peer);
                    let shadow = self.eorder.object(object_id(peer, 0));
                    let cap = self.vat(v).pipeline(&answer, &[]);
                    self.store_cap(v, slot, cap, shadow);
                    // Keep the bootstrap answer too (its results hold the capability).
                    let answer_shadow = self.eorder.unknown();
                    self.store_answer(v, slot2, answer, answer_shadow);
                }
            }
            93..=96 => {
                // Introduce: pass a capability from one peer to another.
                let arg = (slot + 1) % SLOTS;
                self.call(v, slot, Some(arg), slot2);
            }
            _ => {
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
                    self.answer(v as VatId, 0, 0, 0);
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
