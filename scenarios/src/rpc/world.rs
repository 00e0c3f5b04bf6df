//! The RPC workload, in the spirit of mirage/capnp-rpc's fuzzer: each step one action, drawn
//! from the decision source, by one vat: deliver a queued message, call a held capability
//! (perhaps with a capability argument, perhaps introducing a third vat's capability), pipeline
//! on an unresolved answer, answer a call (results, a promise, an exception or a tail call),
//! release, finish or cancel, bootstrap; plus the faults of the network (`net.rs`).
//!
//! The application is the probe application (`app.rs`), one per vat; their calls' arrivals go
//! straight to the E-order oracle, which keeps the shadow reference graph. At the end the
//! network is drained, every call answered and everything given back, and the wire checker
//! judges quiescence.

use super::Links;
use super::app::{Acting, Answer, Habits, Ledger, ProbeApp, SLOTS, Via, objects_of};
use super::mix::Mix;
use super::net::Net;
use captp::{VatConfig, VatId};
use models::Violation;
use simkit::Ctx;
use std::collections::BTreeMap;

/// This workload's habits (see `Habits`).
const HABITS: Habits = Habits {
    answer_waits_for_arg: false,
    names_cycles: true,
};

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

pub struct World {
    pub net: Net,
    mix: Mix<Action>,
    /// Each direction's share of the deliveries.
    speeds: BTreeMap<(VatId, VatId), u64>,
    /// Each vat's application.
    apps: Vec<ProbeApp>,
    ledger: Ledger,
    pub violations: Vec<Violation>,
    pub steps: u64,
    now: u64,
}

/// The answer drawn as `how` (in `0..7`) and `defer` (in `0..4`): `defer` turns half of the
/// "return the argument" answers into "return a promise for the argument", and picks whether
/// work is handed on to a fresh helper object or to the capability in the slot named.
fn answer_kind(how: u64, defer: u64) -> Answer {
    let via = if defer.is_multiple_of(2) {
        Via::Helper
    } else {
        Via::Held
    };
    match how {
        0 if defer >= 2 => Answer::PromiseForArgument(via),
        0 | 1 => Answer::Argument,
        2 => Answer::Held,
        3 => Answer::Follow,
        4 => Answer::TailCall,
        5 => Answer::HandOn(via),
        _ => Answer::Exception,
    }
}

impl World {
    /// `speeds` gives each direction's share of the deliveries (a direction missing from it
    /// has share 1).
    pub fn new(
        configs: Vec<VatConfig>,
        links: Links,
        max_delay: u64,
        mix: Mix<Action>,
        speeds: BTreeMap<(VatId, VatId), u64>,
    ) -> Self {
        let n = configs.len();
        let mut w = World {
            speeds,
            net: Net::new(configs, links, max_delay),
            mix,
            apps: (0..n).map(|v| ProbeApp::new(v as VatId)).collect(),
            ledger: Ledger::new(HABITS),
            violations: Vec::new(),
            steps: 0,
            now: 0,
        };
        for (vat, app) in w.net.vats.iter_mut().zip(&w.apps) {
            vat.set_bootstrap(app.bootstrap_object());
        }
        w
    }

    /// Vat `v`'s application, acting.
    fn acting(&mut self, v: VatId) -> Acting<'_, Vec<Violation>> {
        Acting {
            vat: &mut self.net.vats[v as usize],
            app: &mut self.apps[v as usize],
            ledger: &mut self.ledger,
            journal: &mut self.violations,
        }
    }

    /// Hands every vat's calls to its application, then moves what the vats sent onto the
    /// link (with seeded delays and kept arguments only with a `ctx`).
    fn collect(&mut self, ctx: Option<&Ctx>) {
        for v in 0..self.apps.len() {
            self.acting(v as VatId).take_calls(ctx, |ledger, _, a| {
                ledger
                    .eorder
                    .arrived(a.reference, a.seq, a.info.target, a.object);
            });
        }
        self.net.collect(self.now, ctx);
    }

    /// Writes the network's owed lines, each on its vat's lane, and marks what the oracles
    /// found meanwhile as told here (just after the deliveries that showed it).
    fn trace(&mut self, ctx: &Ctx) {
        let at = ctx.with(|k| {
            for l in self.net.log.drain(..) {
                k.trace_as(&l.lane, l.event, format_args!("{}", l.details));
            }
            for f in self.net.observer.features.drain(..) {
                k.cover("rpc", f);
            }
            for g in self.net.observer.reached.drain(..) {
                k.reached(g);
            }
            k.position()
        });
        self.net.checker.mark_unmarked(at);
        self.ledger.eorder.mark_unmarked(at);
        for v in self.violations.iter_mut().filter(|v| v.at.is_none()) {
            v.at = Some(at);
        }
    }

    /// One workload step.
    pub fn step(&mut self, ctx: &Ctx, faults: bool) {
        self.steps += 1;
        let n = self.apps.len() as u64;
        let v = ctx.choose(n) as VatId;
        let slot = ctx.choose(SLOTS as u64) as usize;
        let slot2 = ctx.choose(SLOTS as u64) as usize;
        match self.mix.draw(ctx).unwrap_or(Action::Deliver) {
            Action::NewObject => {
                // A fresh object of this vat's own, to pass around: what comes back to its
                // host through a peer is what needs the loopback embargo.
                let mut a = self.acting(v);
                let (cap, shadow) = a.fresh_object();
                a.store_cap(slot, cap, shadow, format_args!("a fresh local probe"));
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
                let mut a = self.acting(v);
                for i in 0..burst {
                    a.call(slot, arg, (slot2 + i) % SLOTS);
                }
            }
            Action::Pipeline => {
                let mut a = self.acting(v);
                if a.pipeline(slot, slot2) {
                    // Calls pipelined at once are the ones a resolution can overtake.
                    for i in 0..ctx.choose(3) as usize {
                        a.call(slot2, None, (slot2 + 1 + i) % SLOTS);
                    }
                }
            }
            Action::Answer => {
                // One to three calls owed by this vat, each picked from all it owes (calls
                // are made faster than one a step; answering only the oldest would leave the
                // recent ones, where the races are, to the final drain).
                for _ in 0..1 + ctx.choose(3) {
                    let owed = self.apps[v as usize].owed() as u64;
                    if owed == 0 {
                        break;
                    }
                    let index = ctx.choose(owed) as usize;
                    // Returning the argument half the time: that is how capabilities travel
                    // back to where they live.
                    let how = if ctx.chance(1, 2) { 0 } else { ctx.choose(7) };
                    let defer = ctx.choose(4);
                    self.acting(v).answer(index, answer_kind(how, defer), slot);
                }
            }
            Action::Release => self.acting(v).release(slot),
            Action::Finish => self.acting(v).finish(slot),
            Action::Bootstrap => {
                let peers = self.net.vats[v as usize].peers();
                if !peers.is_empty() {
                    let peer = peers[ctx.choose(peers.len() as u64) as usize];
                    let mut a = self.acting(v);
                    let (answer, shadow) = a.bootstrap(peer, objects_of(peer), slot);
                    // Keep the bootstrap answer too (its results hold the capability).
                    a.keep_bootstrap(slot2, answer, shadow);
                }
            }
            Action::Echo => {
                // The loopback pattern in one step: send a fresh object of ours out, pipeline
                // on the answer at once (the callee may well hand it straight back, or a
                // promise for it), call through the pipeline before the answer comes, and
                // hold the pipelined capability where other actions call or pass it on.
                let arg_slot = (slot + 1) % SLOTS;
                let answer_slot = (slot + 2) % SLOTS;
                let pipelined_slot = (slot + 3) % SLOTS;
                let mut a = self.acting(v);
                let (cap, shadow) = a.fresh_object();
                a.store_cap(arg_slot, cap, shadow, format_args!("a fresh local probe"));
                a.call(slot, Some(arg_slot), answer_slot);
                if a.pipeline(answer_slot, pipelined_slot) {
                    for i in 0..ctx.choose(3) as usize {
                        a.call(pipelined_slot, None, (slot + 4 + i) % SLOTS);
                    }
                }
            }
            Action::Introduce => {
                // Introduce: pass a capability from one peer to another.
                let arg = (slot + 1) % SLOTS;
                self.acting(v).call(slot, Some(arg), slot2);
            }
            Action::Fault => {
                if faults && ctx.chance(1, 4) {
                    if ctx.chance(1, 3) {
                        self.net.restart(v);
                        let app = &mut self.apps[v as usize];
                        app.reset();
                        self.net.vats[v as usize].set_bootstrap(app.bootstrap_object());
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
                    self.acting(v as VatId).give_back();
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
                    // Each delivery's lines now, so a violation it shows points at them.
                    self.trace(ctx);
                    continue;
                }
                if let Some(v) = (0..self.apps.len()).find(|&v| self.apps[v].owes()) {
                    // Answer with a fresh probe so that nothing is left to pipeline on.
                    self.acting(v as VatId).answer(0, Answer::Argument, 0);
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
        v.extend(self.ledger.eorder.violations().iter().cloned());
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
        self.ledger.eorder.arrivals()
    }
}
