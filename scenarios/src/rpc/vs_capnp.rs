//! `rpc-vs-capnp-rpc`: our engine against a second, independent implementation. Vat 0 is our
//! `captp::Vat`; vat 1 is the reference Rust crate capnp-rpc 0.27.3 (`capnp_peer::CapnpRpcVat`),
//! run as a message-level peer inside the simulation.
//!
//! Model: one connection, a per-direction FIFO of real encoded `rpc.capnp` messages. Our
//! messages are encoded with `captp::wire::encode`; capnp-rpc's are the bytes it framed itself.
//! Every message is decoded with our decoder at delivery (as hostile input) for the oracles, and
//! handed to the receiver as it travelled (bytes to capnp-rpc, the decoded message to our vat).
//! Each step one action, drawn from the decision source, by one side: deliver one deliverable
//! queue head; call a held capability (`Probe.call(ref, seq, arg)`, sometimes passing a
//! capability, sometimes a fresh local probe); pipeline on an answer; take the capability out of
//! a returned answer; answer a call (our side: results with the argument, a fresh probe or a held
//! capability, a promise for another answer, a tail call or an exception; capnp-rpc's probe
//! objects answer every call at once, with the argument or a fresh probe); release; finish or
//! drop an answer; bootstrap. At the end the network is drained, every call answered, everything
//! given back on both sides and the network drained again.
//!
//! Faults: seeded delivery delays and interleaving of the two directions, and connection loss.
//! A connection ends when the fault cuts it, when our vat aborts it (a protocol error) or when
//! capnp-rpc shuts it down (its `Abort`): both sides then see a closed connection (everything in
//! flight is lost; capnp-rpc's side is cut and run until it has torn everything down), and a new
//! connection is made at a new epoch with a fresh capnp-rpc vat (an `RpcSystem` serves one
//! connection, so reconnecting means a new incarnation of vat 1 with new probe objects; our vat
//! keeps its state, its capabilities from the old connection are broken).
//!
//! Oracles: the wire checker over every delivered message in both directions; E-order with the
//! shadow reference graph over arrivals at both sides' objects (ours from our vat's events,
//! capnp-rpc's from its probe objects' arrival log), plus a mirror that also flags a call
//! arriving after *any* later call on its reference (the oracle compares with the last arrival
//! only); "a correct peer never aborts" and never panics; quiescence (wire checker, then our vat
//! must track nothing once the connection is closed).
//!
//! Classification: a violation is reported only when our engine is at fault; what capnp-rpc does
//! wrong is a *finding* about that crate: a trace line `capnp-finding` and the metrics
//! `capnp_rpc_findings` (and one per kind), never a violation, so it cannot fail our sweeps.
//! The rule, per oracle:
//! - Wire: a rule broken by a message is the fault of its sender. The export and promise rules
//!   are judged by the sender's own view when it sent the message (`View`: what it had sent and
//!   received by then), because the checker, judging in delivery order, misreads messages that
//!   cross, and lacks rpc.capnp's rule that a `Finish` with `releaseResultCaps` releases the
//!   capabilities of a `Return` it crosses; references the checker still counts for that reason
//!   (and the "second Resolve" it then sees for a freed and reused export ID) are nobody's
//!   fault. An `Unimplemented` from capnp-rpc for one of our (level-1) messages is capnp-rpc's.
//!   Something capnp-rpc sends that our decoder refuses is ours (our decoder must read what the
//!   reference implementation writes).
//! - E-order, call `late` on a reference arrived before the earlier call `early`: if some
//!   direction of the link carried `late` before `early` (comparing the i-th time each crossed
//!   that direction), the sender of the first such inversion reordered them. Otherwise the
//!   inversion happened inside the vat hosting the object (it delivered `late` without waiting
//!   for `early`: a missing or lifted embargo, or a call left unrun), unless the other vat
//!   reflected that vat's `Disembargo.senderLoopback` before sending `early` back, though
//!   `early` had been sent to the same target before the disembargo: then the reflecting vat is
//!   at fault. A call that reaches an object its reference does not designate is the fault of
//!   the vat that hosts the object and delivered it.
//! - Aborts: our vat aborting is correct (a finding about capnp-rpc) when capnp-rpc's message
//!   broke a rule, by the checker or by capnp-rpc's own view (a `Resolve` for an export it had
//!   re-described as `senderHosted` while it was an unresolved promise); otherwise it is ours.
//!   capnp-rpc aborting on a message of ours is ours, unless capnp-rpc's own words show the
//!   message was legitimate (a `Disembargo.senderLoopback` to a target that capnp-rpc resolved,
//!   perhaps over several hops, to a capability of ours: capnproto PR #1656, capnproto-rust
//!   #529); capnp-rpc aborting on a driver action is its own doing.
//! - Panics: a panic inside capnp-rpc (handling a message or a driver call) is a finding; that
//!   vat is given up and the connection ends.
//! - Quiescence: a question left unreturned is the callee's fault, one left unfinished the
//!   asker's; an export reference still held is the holder's; an embargo never reflected is the
//!   fault of the vat that should have reflected it. When capnp-rpc left questions of ours
//!   unreturned, what our side leaves (answers and references waiting for those questions) is
//!   counted as a consequence, a finding. Our vat still tracking anything after the final
//!   disconnect is ours, always.

use super::net::summary;
use super::waits::Waits;
use crate::{Scenario, Setup, Violation};
use capnp_peer::{AnswerHandle, Answered, CapHandle, CapnpRpcVat};
use captp::probe::{CALL_METHOD, PROBE_INTERFACE_ID, ProbeCall, ProbeReturn};
use captp::wire::{
    CapDescriptor, DisembargoContext, Message, MessageTarget, Resolution, ReturnResult, decode,
    encode,
};
use captp::{AnswerRef, CallId, CapRef, Outcome, ProtocolError, Vat, VatConfig, VatEvent, VatId};
use models::rpc::{EOrder, ShadowId, WireChecker};
use simkit::{Ctx, KernelOptions};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;

/// Our vat.
const OURS: VatId = 0;
/// The capnp-rpc vat.
const THEIRS: VatId = 1;
/// Capability and answer slots per side (overwriting a slot gives back its old entry).
const SLOTS: usize = 6;

pub struct VsCapnpRpc;

impl Scenario for VsCapnpRpc {
    fn name(&self) -> &'static str {
        "rpc-vs-capnp-rpc"
    }

    fn description(&self) -> &'static str {
        "Cap'n Proto RPC: our engine against the capnp-rpc crate over the simulated link, \
         pipelining, embargoes, faults; capnp-rpc's own faults are findings, not violations"
    }

    fn expected_steps(&self) -> u64 {
        200
    }

    fn kernel_options(&self) -> KernelOptions {
        KernelOptions {
            buggify: false,
            ..KernelOptions::default()
        }
    }

    fn run(&self, setup: &mut Setup) -> Vec<Violation> {
        let steps = setup.derive("rpc_steps", 60, 240);
        let max_delay = setup.derive("rpc_max_delay_us", 0, 3) * 1_000;
        let duel = Rc::new(RefCell::new(Duel::new(max_delay)));
        let ctx = setup.ctx();
        let d = duel.clone();
        let done = Rc::new(Cell::new(false));
        let finished = done.clone();
        setup.sim.spawn("rpc-net", async move {
            for _ in 0..steps {
                d.borrow_mut().step(&ctx);
                ctx.sleep(1_000).await;
            }
            d.borrow_mut().finish(&ctx);
            finished.set(true);
        });
        let outcome = setup.sim.run();
        let mut v = models::liveness::check(&outcome);
        let mut d = duel.borrow_mut();
        if !done.get() {
            v.push(Violation::new("rpc-app", "the workload did not finish"));
        }
        setup.metric("rpc_messages", d.delivered);
        setup.metric("rpc_arrivals", d.eorder.arrivals());
        setup.metric("rpc_connections", u64::from(d.epoch));
        let count = |kind: Kind| d.findings.iter().filter(|f| f.0 == kind).count() as u64;
        setup.metric("capnp_rpc_findings", d.findings.len() as u64);
        setup.metric("capnp_rpc_eorder_findings", count(Kind::EOrder));
        setup.metric("capnp_rpc_wire_findings", count(Kind::Wire));
        setup.metric("capnp_rpc_abort_findings", count(Kind::Abort));
        setup.metric("capnp_rpc_quiescence_findings", count(Kind::Quiescence));
        setup.metric("capnp_rpc_panic_findings", count(Kind::Panic));
        v.append(&mut d.violations);
        v
    }
}

/// What kind of oracle a finding about capnp-rpc comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    EOrder,
    Wire,
    Abort,
    Quiescence,
    Panic,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::EOrder => "e-order",
            Kind::Wire => "rpc-wire",
            Kind::Abort => "rpc-abort",
            Kind::Quiescence => "rpc-quiescence",
            Kind::Panic => "no-panic",
        }
    }
}

/// The message of a caught panic.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a panic without a message)".into())
}

/// One of `filled`, drawn from the decision source.
fn pick(ctx: &Ctx, filled: &[usize]) -> Option<usize> {
    if filled.is_empty() {
        return None;
    }
    filled
        .get(ctx.choose(filled.len() as u64) as usize)
        .copied()
}

fn other(v: VatId) -> VatId {
    1 - v
}

fn our_object(n: u64) -> u64 {
    n
}

/// Objects of capnp-rpc's incarnation `inc` (a new one per connection), numbered by the probe
/// registry of that incarnation.
fn their_object(inc: u64, n: u64) -> u64 {
    (u64::from(THEIRS) << 32) | (inc << 20) | n
}

struct OurCap {
    cap: CapRef,
    reference: u64,
    next_seq: u64,
    shadow: ShadowId,
}

struct OurAnswer {
    answer: AnswerRef,
    /// The call (`r<ref>#<seq>`) or "bootstrap", for the trace.
    name: String,
    /// Where the capability sits in the results: `[0]` for `Probe.call`, `[]` for bootstrap.
    path: &'static [u16],
    cap_shadow: ShadowId,
}

struct Owed {
    call: CallId,
    /// The call's `(ref, seq)`, for the trace.
    name: (u64, u64),
    earlier: u64,
    arg: Option<(CapRef, ShadowId)>,
    answer_shadow: ShadowId,
}

struct TheirCap {
    handle: CapHandle,
    reference: u64,
    next_seq: u64,
    shadow: ShadowId,
}

struct TheirAnswer {
    handle: AnswerHandle,
    /// The call (`r<ref>#<seq>`), for the trace.
    name: String,
    cap_shadow: ShadowId,
    /// Whether its returned capability was already taken (capnp-peer hands out one handle).
    taken: bool,
}

#[derive(Clone, Copy)]
struct CallInfo {
    target: ShadowId,
    answer: ShadowId,
    arg: Option<ShadowId>,
}

struct InFlight {
    ready_at: u64,
    bytes: Vec<u8>,
    /// The message, decoded (with our decoder) when it was sent.
    msg: Result<Message, String>,
}

/// One crossing of the link by a `Probe.call`.
struct Crossing {
    from: VatId,
    pos: u64,
    target: MessageTarget,
    /// Sent with `sendResultsTo.yourself` (a tail call).
    yourself: bool,
}

/// One `Disembargo` loopback that crossed the link.
struct Loopback {
    from: VatId,
    pos: u64,
    context: DisembargoContext,
    target: MessageTarget,
}

#[derive(Clone, Copy, Default)]
struct QState {
    returned: bool,
    finished: bool,
    /// Sent with `sendResultsTo.yourself`.
    yourself: bool,
}

/// One vat's own view of its exports on the connection: what it had sent and what it had
/// received when it sent each message. The wire checker judges in delivery order, which
/// misjudges messages that cross on the wire; this view judges each sender by what it knew.
/// It also applies one rule the checker lacks: a `Finish` with `releaseResultCaps` that the
/// callee receives *before* sending the `Return` releases the capabilities of that `Return`
/// ("all capabilities that were in the results should be considered released", rpc.capnp;
/// capnp-rpc relies on it and never releases them).
#[derive(Default)]
struct View {
    /// References the peer holds to each export.
    held: BTreeMap<u32, u64>,
    /// Exports sent as `senderPromise` and not yet resolved.
    promises: BTreeSet<u32>,
    /// Promise exports already resolved.
    resolved: BTreeSet<u32>,
    /// Exports in the params of each of its questions, and in the results of each answer.
    params: BTreeMap<u32, Vec<u32>>,
    results: BTreeMap<u32, Vec<u32>>,
    /// Answers the peer finished, with `releaseResultCaps`, before they were returned.
    early: BTreeSet<u32>,
    /// Answers returned.
    returned: BTreeSet<u32>,
    /// Promise exports it described as `senderHosted` while they were unresolved.
    hosted_promises: BTreeSet<u32>,
}

impl View {
    fn add(&mut self, table: &[CapDescriptor], problems: &mut Vec<String>) -> Vec<u32> {
        let mut ids = Vec::new();
        for d in table {
            match d {
                CapDescriptor::SenderHosted(id) => {
                    if self.promises.contains(id) && self.hosted_promises.insert(*id) {
                        problems.push(format!(
                            "describes export {id}, a promise it has not resolved, as senderHosted"
                        ));
                    }
                    *self.held.entry(*id).or_default() += 1;
                    ids.push(*id);
                }
                CapDescriptor::SenderPromise(id) => {
                    if !self.held.contains_key(id) {
                        self.resolved.remove(id);
                        self.promises.insert(*id);
                    }
                    *self.held.entry(*id).or_default() += 1;
                    ids.push(*id);
                }
                _ => {}
            }
        }
        ids
    }

    fn release(&mut self, id: u32, n: u64) {
        let left = self.held.get(&id).copied().unwrap_or(0).saturating_sub(n);
        if left == 0 {
            self.held.remove(&id);
            self.promises.remove(&id);
            self.resolved.remove(&id);
            self.hosted_promises.remove(&id);
        } else {
            self.held.insert(id, left);
        }
    }

    /// The vat sends `msg`; returns the rules it breaks by its own account.
    fn sent(&mut self, msg: &Message) -> Vec<String> {
        let mut problems = Vec::new();
        match msg {
            Message::Call(c) => {
                let ids = self.add(&c.params.cap_table, &mut problems);
                self.params.insert(c.question_id, ids);
            }
            Message::Return(r) => {
                let q = r.answer_id;
                let ids = match &r.result {
                    ReturnResult::Results(p) => self.add(&p.cap_table, &mut problems),
                    _ => Vec::new(),
                };
                if self.early.remove(&q) {
                    for id in ids {
                        self.release(id, 1);
                    }
                } else {
                    self.results.insert(q, ids);
                    self.returned.insert(q);
                }
            }
            Message::Resolve(r) => {
                let id = r.promise_id;
                if self.resolved.contains(&id) {
                    problems.push(format!("second Resolve for promise {id}"));
                } else if self.held.contains_key(&id)
                    && !self.promises.contains(&id)
                    && !self.hosted_promises.contains(&id)
                {
                    problems.push(format!("Resolve for export {id}, which is not a promise"));
                }
                if self.held.contains_key(&id) {
                    self.promises.remove(&id);
                    self.resolved.insert(id);
                }
                if let Resolution::Cap(d) = &r.resolution {
                    self.add(std::slice::from_ref(d), &mut problems);
                }
            }
            _ => {}
        }
        problems
    }

    /// The vat receives `msg` from its peer.
    fn received(&mut self, msg: &Message) {
        match msg {
            Message::Return(r) => {
                let params = self.params.remove(&r.answer_id).unwrap_or_default();
                if r.release_param_caps {
                    for id in params {
                        self.release(id, 1);
                    }
                }
            }
            Message::Finish(f) => {
                let q = f.question_id;
                let ids = self.results.remove(&q).unwrap_or_default();
                let returned = self.returned.remove(&q);
                if f.release_result_caps {
                    if returned {
                        for id in ids {
                            self.release(id, 1);
                        }
                    } else {
                        self.early.insert(q);
                    }
                }
            }
            Message::Release(r) => self.release(r.id, u64::from(r.reference_count)),
            _ => {}
        }
    }
}

/// Both sides, the link and the oracles.
struct Duel {
    ours: Vat,
    theirs: CapnpRpcVat,
    /// capnp-rpc's incarnation (one per connection).
    incarnation: u64,
    epoch: u32,
    /// Indexed by the sending vat.
    queues: [VecDeque<InFlight>; 2],
    max_delay: u64,
    now: u64,
    checker: WireChecker,
    /// Questions per asking vat, for blaming what quiescence finds.
    questions: [BTreeMap<u32, QState>; 2],
    /// Each vat's own view of its exports.
    views: [View; 2],
    /// What capnp-rpc's `Return`s (by our question) and `Resolve`s (by its export) said, on
    /// this connection.
    their_returns: BTreeMap<u32, captp::wire::Payload>,
    their_resolves: BTreeMap<u32, CapDescriptor>,
    /// capnp-rpc panicked (the message); its vat is given up (`reconnect`) right after.
    their_panic: Option<String>,
    eorder: EOrder,
    /// The last sequence number that arrived per reference (mirrors the E-order oracle).
    last_seq: BTreeMap<u64, u64>,
    /// The highest sequence number that arrived per reference.
    max_seq: BTreeMap<u64, u64>,
    calls: BTreeMap<(u64, u64), CallInfo>,
    /// What waits for what, to keep promise cycles out of the workload.
    waits: Waits,
    our_caps: Vec<Option<OurCap>>,
    our_answers: Vec<Option<OurAnswer>>,
    owed: Vec<Owed>,
    our_next_object: u64,
    /// Calls that reached each of our objects so far.
    our_arrivals: BTreeMap<u64, u64>,
    their_caps: Vec<Option<TheirCap>>,
    their_answers: Vec<Option<TheirAnswer>>,
    /// How much of capnp-rpc's arrival log the oracles have seen.
    their_seen: usize,
    next_reference: u64,
    /// Delivered messages so far (positions on the link, across connections).
    delivered: u64,
    crossings: BTreeMap<(u64, u64), Vec<Crossing>>,
    loopbacks: Vec<Loopback>,
    violations: Vec<Violation>,
    findings: Vec<(Kind, String)>,
    log: Vec<String>,
}

impl Duel {
    fn new(max_delay: u64) -> Self {
        let mut d = Duel {
            ours: Vat::new(OURS, VatConfig::default()),
            theirs: CapnpRpcVat::new(true),
            incarnation: 0,
            epoch: 1,
            queues: [VecDeque::new(), VecDeque::new()],
            max_delay,
            now: 0,
            checker: WireChecker::new(),
            questions: [BTreeMap::new(), BTreeMap::new()],
            views: [View::default(), View::default()],
            their_returns: BTreeMap::new(),
            their_resolves: BTreeMap::new(),
            their_panic: None,
            eorder: EOrder::new(),
            last_seq: BTreeMap::new(),
            max_seq: BTreeMap::new(),
            calls: BTreeMap::new(),
            waits: Waits::default(),
            our_caps: (0..SLOTS).map(|_| None).collect(),
            our_answers: (0..SLOTS).map(|_| None).collect(),
            owed: Vec::new(),
            our_next_object: 1,
            our_arrivals: BTreeMap::new(),
            their_caps: (0..SLOTS).map(|_| None).collect(),
            their_answers: (0..SLOTS).map(|_| None).collect(),
            their_seen: 0,
            next_reference: 1,
            delivered: 0,
            crossings: BTreeMap::new(),
            loopbacks: Vec::new(),
            violations: Vec::new(),
            findings: Vec::new(),
            log: Vec::new(),
        };
        d.ours.set_bootstrap(our_object(0));
        d.ours.connect(THEIRS, d.epoch, false);
        d
    }

    fn new_reference(&mut self) -> u64 {
        let r = self.next_reference;
        self.next_reference += 1;
        r
    }

    fn violation(&mut self, oracle: &'static str, msg: String) {
        self.log.push(format!("violation {oracle}: {msg}"));
        self.violations.push(Violation::new(oracle, msg));
    }

    fn finding(&mut self, kind: Kind, msg: String) {
        self.log
            .push(format!("capnp-finding {}: {msg}", kind.name()));
        self.findings.push((kind, msg));
    }

    /// Records a problem found by `kind`'s oracle, as a violation if `at_fault` is our vat and
    /// as a finding about capnp-rpc otherwise.
    fn blame(&mut self, at_fault: VatId, kind: Kind, msg: String) {
        if at_fault == OURS {
            self.violation(kind.name(), msg);
        } else {
            self.finding(kind, msg);
        }
    }

    /// Runs `f` on capnp-rpc's vat. A panic inside capnp-rpc is a finding (a peer must not
    /// panic on any input or driver call); the vat is then given up (`reconnect`) and nothing
    /// more runs on it.
    fn guarded<R>(&mut self, what: &str, f: impl FnOnce(&mut CapnpRpcVat) -> R) -> Option<R> {
        if self.their_panic.is_some() {
            return None;
        }
        let theirs = &mut self.theirs;
        match catch_unwind(AssertUnwindSafe(move || f(theirs))) {
            Ok(r) => Some(r),
            Err(p) => {
                let text = panic_text(&*p);
                self.finding(Kind::Panic, format!("capnp-rpc panicked {what}: {text}"));
                self.their_panic = Some(text);
                None
            }
        }
    }

    fn flush_log(&mut self, ctx: &Ctx) {
        for line in self.log.drain(..) {
            ctx.trace("rpc", format_args!("{line}"));
        }
    }

    // ---------------------------------------------------------------------------------------
    // The link.

    /// Runs capnp-rpc, hands events to both applications and queues what both sides sent,
    /// each message with a seeded delay (none without a `ctx`).
    fn settle(&mut self, ctx: Option<&Ctx>) {
        self.drain_our_events();
        self.guarded("running", |t| {
            t.run_until_stalled();
        });
        self.feed_their_arrivals();
        let ours: Vec<(Vec<u8>, Result<Message, String>)> = self
            .ours
            .take_outgoing()
            .into_iter()
            .filter(|(to, _)| *to == THEIRS)
            // What travels is the encoding; what the oracles read is its decoding.
            .map(|(_, m)| {
                let bytes = encode(&m);
                let msg = decode(&bytes).map_err(|e| e.to_string());
                (bytes, msg)
            })
            .collect();
        let theirs: Vec<(Vec<u8>, Result<Message, String>)> = self
            .guarded("sending", CapnpRpcVat::take_outgoing)
            .unwrap_or_default()
            .into_iter()
            .map(|bytes| {
                let msg = decode(&bytes).map_err(|e| e.to_string());
                (bytes, msg)
            })
            .collect();
        for (from, msgs) in [(OURS, ours), (THEIRS, theirs)] {
            for (bytes, msg) in msgs {
                if let Ok(m) = &msg {
                    for problem in self.views[from as usize].sent(m) {
                        self.blame(
                            from,
                            Kind::Wire,
                            format!("vat {from} -> vat {}: {problem}", other(from)),
                        );
                    }
                }
                let d = match ctx {
                    Some(ctx) if self.max_delay > 0 => ctx.choose(self.max_delay + 1),
                    _ => 0,
                };
                self.queues[from as usize].push_back(InFlight {
                    ready_at: self.now + d,
                    bytes,
                    msg,
                });
            }
        }
        if self.their_panic.is_some() {
            self.reconnect("capnp-rpc panicked");
        }
    }

    /// Senders whose queue head is deliverable now.
    fn ready(&self) -> Vec<VatId> {
        [OURS, THEIRS]
            .into_iter()
            .filter(|&v| {
                self.queues[v as usize]
                    .front()
                    .is_some_and(|m| m.ready_at <= self.now)
            })
            .collect()
    }

    fn next_ready_at(&self) -> Option<u64> {
        self.queues
            .iter()
            .filter_map(|q| q.front().map(|m| m.ready_at))
            .min()
    }

    /// Delivers the head of `from`'s queue to the other side.
    fn deliver(&mut self, from: VatId) {
        let Some(m) = self.queues[from as usize].pop_front() else {
            return;
        };
        let to = other(from);
        let msg = match m.msg {
            Ok(msg) => msg,
            Err(e) => {
                // Ours either way: we sent it, or our decoder refuses the reference's bytes.
                self.violation(
                    "rpc-wire",
                    format!("vat {from} -> vat {to}: undecodable message: {e}"),
                );
                return;
            }
        };
        self.delivered += 1;
        let pos = self.delivered;
        let line = match &msg {
            Message::Unimplemented(inner) => format!("unimplemented({})", summary(inner)),
            _ => summary(&msg),
        };
        self.log.push(format!("{from}->{to} {line}"));
        self.record_crossing(from, pos, &msg);
        self.views[to as usize].received(&msg);
        self.track_question(from, &msg);
        if let Message::Unimplemented(inner) = &msg {
            // Our vat sends only level-1 messages; a peer that implements level 1 handles them.
            self.blame(
                from,
                Kind::Wire,
                format!(
                    "vat {from} -> vat {to}: answered our {} with Unimplemented",
                    summary(inner)
                ),
            );
        }
        let before = self.checker.violations().len();
        self.checker.delivered(from, to, &msg);
        // A second Resolve is judged by the sender's own view when it was sent (`View`): the
        // checker counts references an early Finish released, and so misses that the export ID
        // was freed and reused.
        let flagged: Vec<String> = self.checker.violations()[before..]
            .iter()
            .map(|v| v.message.clone())
            .filter(|m| !m.contains("second Resolve for promise"))
            .collect();
        for f in &flagged {
            self.blame(from, Kind::Wire, f.clone());
        }
        match &msg {
            Message::Return(r) if from == THEIRS => {
                if let ReturnResult::Results(p) = &r.result {
                    self.their_returns.insert(r.answer_id, p.clone());
                }
            }
            Message::Resolve(r) if from == THEIRS => {
                if let Resolution::Cap(d) = &r.resolution {
                    self.their_resolves.insert(r.promise_id, d.clone());
                }
            }
            _ => {}
        }
        if to == OURS {
            // capnp-rpc resolving an export it had described as senderHosted.
            let inconsistent = matches!(&msg, Message::Resolve(r)
                if self.views[THEIRS as usize].hosted_promises.contains(&r.promise_id));
            if let Err(e) = self.ours.handle(THEIRS, msg) {
                self.our_abort(&e, !flagged.is_empty() || inconsistent);
            }
        } else {
            // It runs now; what it sends is queued by the next `settle`.
            self.guarded("handling a message", |t| {
                t.deliver(m.bytes);
                t.run_until_stalled();
            });
            self.feed_their_arrivals();
            if let Some(reason) = self.theirs.abort_reason() {
                self.their_abort(&reason, &msg, !flagged.is_empty());
            }
        }
        if self.their_panic.is_some() {
            self.reconnect("capnp-rpc panicked");
        } else if !self.ours.is_connected(THEIRS) || self.theirs.is_closed() {
            self.reconnect("aborted");
        }
    }

    /// Our vat aborted the connection on a message from capnp-rpc; `broke` says whether that
    /// message broke a rule by the oracles' account.
    fn our_abort(&mut self, e: &ProtocolError, broke: bool) {
        let msg = format!("our vat aborted the connection: {e}");
        if e.is_peer_fault() && broke {
            self.finding(
                Kind::Abort,
                format!("{msg} (capnp-rpc's message broke a rule)"),
            );
        } else {
            self.violation("rpc-abort", msg);
        }
    }

    /// capnp-rpc shut the connection down after receiving a message of kind `kind` from us.
    /// capnp-rpc shut the connection down on our message `sent`; `flagged` says whether that
    /// message broke a wire rule. Ours unless capnp-rpc's own words show ours was legitimate:
    /// so far, a `Disembargo.senderLoopback` to a target that capnp-rpc itself resolved (perhaps
    /// over several hops) to a capability of ours (what capnproto PR #1656 fixed in C++ and
    /// capnproto-rust #529 suspects in capnp-rpc).
    fn their_abort(&mut self, reason: &str, sent: &Message, flagged: bool) {
        let msg = format!(
            "capnp-rpc aborted the connection after our {}: {reason}",
            summary(sent)
        );
        let loopback = match sent {
            Message::Disembargo(d) => {
                matches!(d.context, DisembargoContext::SenderLoopback(_))
                    && self.loops_back(&d.target)
            }
            _ => false,
        };
        if loopback && !flagged {
            self.finding(
                Kind::Abort,
                format!("{msg} (capnp-rpc had resolved that target to a capability of ours)"),
            );
        } else if flagged {
            self.violation(
                "rpc-abort",
                format!("{msg} (our message broke a wire rule)"),
            );
        } else {
            self.violation("rpc-abort", msg);
        }
    }

    /// Whether capnp-rpc's `Return`s and `Resolve`s say that `target` (of ours, on capnp-rpc's
    /// side) designates a capability hosted by our vat.
    fn loops_back(&self, target: &MessageTarget) -> bool {
        let mut desc = match target {
            MessageTarget::ImportedCap(id) => self.their_resolves.get(id).cloned(),
            MessageTarget::PromisedAnswer(pa) => {
                let path: Option<Vec<u16>> = pa
                    .transform
                    .iter()
                    .map(|op| match op {
                        captp::wire::PipelineOp::GetPointerField(i) => Some(*i),
                        captp::wire::PipelineOp::Noop => None,
                    })
                    .collect();
                self.their_returns.get(&pa.question_id).and_then(|p| {
                    let i = p.content.cap_index_at(&path?)?;
                    p.cap_table.get(i as usize).cloned()
                })
            }
        };
        for _ in 0..64 {
            match desc {
                Some(CapDescriptor::ReceiverHosted(_) | CapDescriptor::ReceiverAnswer(_)) => {
                    return true;
                }
                Some(CapDescriptor::SenderHosted(id) | CapDescriptor::SenderPromise(id)) => {
                    desc = self.their_resolves.get(&id).cloned();
                }
                _ => return false,
            }
        }
        false
    }

    fn record_crossing(&mut self, from: VatId, pos: u64, msg: &Message) {
        match msg {
            Message::Call(c)
                if c.interface_id == PROBE_INTERFACE_ID && c.method_id == CALL_METHOD =>
            {
                if let Ok(p) = ProbeCall::from_value(&c.params.content) {
                    self.crossings
                        .entry((p.ref_id, p.seq))
                        .or_default()
                        .push(Crossing {
                            from,
                            pos,
                            target: c.target.clone(),
                            yourself: c.send_results_to == captp::wire::SendResultsTo::Yourself,
                        });
                }
            }
            Message::Disembargo(d) => self.loopbacks.push(Loopback {
                from,
                pos,
                context: d.context.clone(),
                target: d.target.clone(),
            }),
            _ => {}
        }
    }

    fn track_question(&mut self, from: VatId, msg: &Message) {
        let to = other(from);
        match msg {
            Message::Bootstrap(b) => {
                self.questions[from as usize].insert(b.question_id, QState::default());
            }
            Message::Call(c) => {
                let yourself = c.send_results_to == captp::wire::SendResultsTo::Yourself;
                self.questions[from as usize].insert(
                    c.question_id,
                    QState {
                        yourself,
                        ..QState::default()
                    },
                );
            }
            Message::Return(r) => {
                let qs = &mut self.questions[to as usize];
                if let Some(s) = qs.get_mut(&r.answer_id) {
                    s.returned = true;
                    if s.finished || r.no_finish_needed {
                        qs.remove(&r.answer_id);
                    }
                }
            }
            Message::Finish(f) => {
                let qs = &mut self.questions[from as usize];
                if let Some(s) = qs.get_mut(&f.question_id) {
                    s.finished = true;
                    if s.returned {
                        qs.remove(&f.question_id);
                    }
                }
            }
            _ => {}
        }
    }

    /// Ends the connection (both sides see it closed, everything in flight is lost) and makes a
    /// new one at the next epoch, with a new incarnation of capnp-rpc.
    fn reconnect(&mut self, why: &str) {
        self.epoch += 1;
        self.log.push(format!(
            "disconnect 0<->1 ({why}); reconnect at epoch {}",
            self.epoch
        ));
        self.queues = [VecDeque::new(), VecDeque::new()];
        self.checker.disconnected(OURS, THEIRS);
        self.questions = [BTreeMap::new(), BTreeMap::new()];
        self.views = [View::default(), View::default()];
        self.their_returns.clear();
        self.their_resolves.clear();
        if self.ours.is_connected(THEIRS) {
            self.ours.disconnect(THEIRS, "simulated connection loss");
        }
        if self.their_panic.is_none() {
            self.guarded("closing", |t| {
                t.disconnect();
                t.run_until_stalled();
            });
            self.feed_their_arrivals();
            let closed = self.theirs.closed();
            self.log.push(format!("capnp-rpc closed: {closed:?}"));
        }
        let panicked = self.their_panic.take().is_some();
        let old = std::mem::replace(&mut self.theirs, CapnpRpcVat::new(true));
        if let Err(p) = catch_unwind(AssertUnwindSafe(move || drop(old)))
            && !panicked
        {
            self.finding(
                Kind::Panic,
                format!("capnp-rpc panicked while dropped: {}", panic_text(&*p)),
            );
        }
        self.incarnation += 1;
        self.their_seen = 0;
        for slot in &mut self.their_caps {
            *slot = None;
        }
        for slot in &mut self.their_answers {
            *slot = None;
        }
        self.ours.connect(THEIRS, self.epoch, false);
        self.drain_our_events();
        let _ = self.ours.take_outgoing();
    }

    // ---------------------------------------------------------------------------------------
    // E-order.

    /// Call `seq` on `reference` arrived at `object`, hosted by `host`.
    fn arrived(&mut self, reference: u64, seq: u64, info: CallInfo, object: u64, host: VatId) {
        self.log
            .push(format!("r{reference}#{seq} arrived at {object:#x}"));
        let before = self.eorder.violations().len();
        let last = self.last_seq.get(&reference).copied();
        self.eorder.arrived(reference, seq, info.target, object);
        self.last_seq.insert(reference, seq);
        let found: Vec<String> = self.eorder.violations()[before..]
            .iter()
            .map(|v| v.message.clone())
            .collect();
        // Beyond the oracle, which compares with the last call that arrived: a call that
        // arrives after any later call on its reference (also once the oracle stopped
        // recording; it keeps 20).
        let max = self.max_seq.get(&reference).copied();
        self.max_seq
            .insert(reference, max.map_or(seq, |m| m.max(seq)));
        let inversion = match (last.filter(|&l| seq <= l), max.filter(|&m| seq <= m)) {
            (Some(l), _) => Some((
                l,
                found.iter().find(|m| m.contains(" after call #")).cloned(),
            )),
            (None, Some(m)) => Some((m, None)),
            (None, None) => None,
        };
        for msg in found.iter().filter(|m| !m.contains(" after call #")) {
            self.blame(
                host,
                Kind::EOrder,
                format!("{msg} (vat {host} delivered it)"),
            );
        }
        if let Some((late, msg)) = inversion {
            let msg = msg.unwrap_or_else(|| {
                format!(
                    "call #{seq} on reference {reference} arrived at object {object:#x} after \
                     call #{late}"
                )
            });
            let (at_fault, why) = self.blame_inversion(reference, seq, late, host);
            self.blame(at_fault, Kind::EOrder, format!("{msg} ({why})"));
        }
    }

    /// Who reordered call `early` after call `late` on `reference`, which arrived at an object
    /// of `host` in the wrong order.
    fn blame_inversion(
        &self,
        reference: u64,
        early: u64,
        late: u64,
        host: VatId,
    ) -> (VatId, String) {
        let none = Vec::new();
        let e = self.crossings.get(&(reference, early)).unwrap_or(&none);
        let l = self.crossings.get(&(reference, late)).unwrap_or(&none);
        let mut first: Option<(u64, VatId)> = None;
        for d in [OURS, THEIRS] {
            let e_on: Vec<u64> = e.iter().filter(|c| c.from == d).map(|c| c.pos).collect();
            let l_on: Vec<u64> = l.iter().filter(|c| c.from == d).map(|c| c.pos).collect();
            if let Some((&lp, _)) = l_on.iter().zip(&e_on).find(|(lp, ep)| lp < ep)
                && first.is_none_or(|(p, _)| lp < p)
            {
                first = Some((lp, d));
            }
        }
        if let Some((_, d)) = first {
            return (d, format!("vat {d} sent call #{late} before call #{early}"));
        }
        let x = other(host);
        for out in e.iter().filter(|c| c.from == host) {
            let back = e
                .iter()
                .find(|c| c.from == x && c.pos > out.pos)
                .map(|c| c.pos);
            for lb in self
                .loopbacks
                .iter()
                .filter(|lb| lb.from == host && lb.pos > out.pos && lb.target == out.target)
            {
                let DisembargoContext::SenderLoopback(embargo) = lb.context else {
                    continue;
                };
                let reflected = self.loopbacks.iter().find(|r| {
                    r.from == x
                        && r.pos > lb.pos
                        && r.context == DisembargoContext::ReceiverLoopback(embargo)
                });
                if let Some(r) = reflected
                    && back.is_none_or(|b| b > r.pos)
                {
                    return (
                        x,
                        format!(
                            "vat {x} reflected embargo {embargo} before sending call #{early} \
                             back, though the call came first on the same target"
                        ),
                    );
                }
            }
        }
        let tail = if e.iter().any(|c| c.from == x && c.yourself) {
            ", which came as a tail call (sendResultsTo.yourself)".to_string()
        } else {
            String::new()
        };
        (
            host,
            format!("vat {host} delivered call #{late} without waiting for call #{early}{tail}"),
        )
    }

    /// A new call's answer waits for its target and (the callee may return it) its argument.
    /// A fresh answer: nothing waits for it yet, so this closes no cycle.
    fn new_call(
        &mut self,
        reference: u64,
        seq: u64,
        target: ShadowId,
        arg: Option<ShadowId>,
    ) -> ShadowId {
        let answer = self.eorder.unknown();
        self.waits.add(answer, target);
        if let Some(a) = arg {
            self.waits.add(answer, a);
        }
        self.calls.insert(
            (reference, seq),
            CallInfo {
                target,
                answer,
                arg,
            },
        );
        answer
    }

    // ---------------------------------------------------------------------------------------
    // Our side.

    fn store_our_cap(&mut self, slot: usize, cap: CapRef, shadow: ShadowId, what: &str) {
        let reference = self.new_reference();
        self.log.push(format!("0 holds r{reference}: {what}"));
        let old = self.our_caps[slot].replace(OurCap {
            cap,
            reference,
            next_seq: 0,
            shadow,
        });
        if let Some(old) = old {
            self.ours.release(old.cap);
        }
    }

    fn store_our_answer(&mut self, slot: usize, answer: OurAnswer) {
        if let Some(old) = self.our_answers[slot].replace(answer) {
            self.ours.finish(old.answer);
        }
    }

    fn new_our_probe(&mut self) -> (CapRef, ShadowId) {
        let object = our_object(self.our_next_object);
        self.our_next_object += 1;
        let shadow = self.eorder.object(object);
        (self.ours.local_cap(object), shadow)
    }

    fn drain_our_events(&mut self) {
        for ev in self.ours.take_events() {
            let VatEvent::Call {
                call,
                object,
                content,
                mut caps,
                ..
            } = ev
            else {
                continue;
            };
            let Ok(ProbeCall {
                ref_id: reference,
                seq,
                ..
            }) = ProbeCall::from_value(&content)
            else {
                self.violation(
                    "rpc-app",
                    "vat 0: a call arrived with a malformed payload".into(),
                );
                for c in caps {
                    self.ours.release(c);
                }
                let _ = self.ours.return_exception(call, "malformed");
                continue;
            };
            let Some(info) = self.calls.get(&(reference, seq)).copied() else {
                self.violation(
                    "e-order",
                    format!("call #{seq} on reference {reference} was never made"),
                );
                for c in caps {
                    self.ours.release(c);
                }
                let _ = self.ours.return_exception(call, "never made");
                continue;
            };
            self.arrived(reference, seq, info, object, OURS);
            let count = self.our_arrivals.entry(object).or_default();
            let earlier = *count;
            *count += 1;
            let arg = match (caps.is_empty(), info.arg) {
                (false, Some(shadow)) => Some((caps.remove(0), shadow)),
                _ => None,
            };
            for c in caps {
                self.ours.release(c);
            }
            self.owed.push(Owed {
                call,
                name: (reference, seq),
                earlier,
                arg,
                answer_shadow: info.answer,
            });
        }
    }

    /// Our side calls the capability in `slot`, with the capability in `arg` (if any).
    fn our_call(&mut self, slot: usize, arg: Option<usize>, answer_slot: usize) {
        let Some(held) = self.our_caps[slot].as_mut() else {
            return;
        };
        let (reference, seq, target) = (held.reference, held.next_seq, held.shadow);
        held.next_seq += 1;
        let arg_shadow = arg.and_then(|a| self.our_caps[a].as_ref().map(|h| h.shadow));
        let answer = self.new_call(reference, seq, target, arg_shadow);
        let Some(held) = self.our_caps[slot].as_ref() else {
            return;
        };
        let argcap = arg.and_then(|a| self.our_caps[a].as_ref().map(|h| &h.cap));
        let caps: Vec<&CapRef> = argcap.into_iter().collect();
        let params = ProbeCall {
            ref_id: reference,
            seq,
            arg: (!caps.is_empty()).then_some(0),
        }
        .to_value();
        self.log.push(format!(
            "0 calls r{reference}#{seq}{}",
            if caps.is_empty() {
                ""
            } else {
                " with a capability"
            }
        ));
        let a = self
            .ours
            .call(&held.cap, PROBE_INTERFACE_ID, CALL_METHOD, params, &caps);
        self.store_our_answer(
            answer_slot,
            OurAnswer {
                answer: a,
                name: format!("r{reference}#{seq}"),
                path: &[0],
                cap_shadow: answer,
            },
        );
    }

    /// Our side takes the capability out of a returned answer.
    fn our_take(&mut self, slot: usize, into: usize) {
        let Some(a) = self.our_answers[slot].as_ref() else {
            return;
        };
        let (path, shadow, what) = (a.path, a.cap_shadow, format!("the results of {}", a.name));
        let Some(Outcome::Results { content, mut caps }) = self.ours.outcome(&a.answer) else {
            return;
        };
        let index = content.cap_index_at(path).map(|i| i as usize);
        let cap = match index {
            Some(i) if i < caps.len() => Some(caps.remove(i)),
            _ => None,
        };
        for c in caps {
            self.ours.release(c);
        }
        if let Some(cap) = cap {
            self.store_our_cap(into, cap, shadow, &what);
        }
    }

    /// Returns `cap` (given back after) as the capability in the results of `owed`, unless it
    /// is a promise waiting for that very answer.
    fn return_cap(
        &mut self,
        owed: &Owed,
        results: captp::wire::AnyValue,
        cap: CapRef,
        shadow: ShadowId,
    ) -> Result<(), ProtocolError> {
        let r = if self
            .waits
            .waits_for(&mut self.eorder, shadow, owed.answer_shadow)
        {
            self.ours
                .return_exception(owed.call, "that capability waits for this answer")
        } else {
            self.eorder
                .unify(owed.answer_shadow, shadow, "returned capability");
            self.ours.return_results(owed.call, results, &[&cap])
        };
        self.ours.release(cap);
        r
    }

    /// Our side answers a call it owes (`how`: 0–1 the argument or a fresh probe, 2 a held
    /// capability, 3 a promise for another answer, 4 a tail call, 5 an exception).
    fn our_answer(&mut self, index: usize, how: u64, slot: usize) {
        if self.owed.is_empty() {
            return;
        }
        let mut owed = self.owed.remove(index % self.owed.len());
        let results = ProbeReturn {
            n: owed.earlier,
            cap: Some(0),
        }
        .to_value();
        let arg = match (how, owed.arg.take()) {
            (0 | 1, arg) => arg,
            (_, Some((cap, _))) => {
                self.ours.release(cap);
                None
            }
            (_, None) => None,
        };
        self.log.push(format!(
            "0 answers r{}#{} with {}",
            owed.name.0,
            owed.name.1,
            match (how, &arg) {
                (0 | 1, Some(_)) => "the argument",
                (0 | 1, None) => "a fresh probe",
                (2, _) => "a held capability",
                (3, _) => "another answer",
                (4, _) => "a tail call",
                _ => "an exception",
            }
        ));
        let result = match how {
            0 | 1 => {
                let (cap, shadow) = match arg {
                    Some(arg) => arg,
                    None => self.new_our_probe(),
                };
                self.return_cap(&owed, results, cap, shadow)
            }
            2 => match self.our_caps[slot].as_ref().map(|h| h.shadow) {
                Some(shadow) => {
                    let Some(h) = self.our_caps[slot].as_ref() else {
                        unreachable!("the slot was just read");
                    };
                    let cap = self.ours.clone_cap(&h.cap);
                    self.return_cap(&owed, results, cap, shadow)
                }
                None => self
                    .ours
                    .return_exception(owed.call, "no capability to return"),
            },
            3 => match self.our_answers[slot]
                .as_ref()
                .map(|a| (a.cap_shadow, a.path))
            {
                Some((followed, &[0]))
                    if self
                        .waits
                        .follow(&mut self.eorder, owed.answer_shadow, followed) =>
                {
                    let Some(a) = self.our_answers[slot].as_ref() else {
                        unreachable!("the slot was just read");
                    };
                    self.eorder
                        .unify(owed.answer_shadow, followed, "returned answer");
                    self.ours.return_answer(owed.call, &a.answer)
                }
                _ => self.ours.return_exception(owed.call, "no answer to return"),
            },
            4 => match self.our_caps[slot].as_ref().map(|h| h.shadow) {
                Some(followed)
                    if self
                        .waits
                        .follow(&mut self.eorder, owed.answer_shadow, followed) =>
                {
                    let Some(h) = self.our_caps[slot].as_mut() else {
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
                    let params = ProbeCall {
                        ref_id: reference,
                        seq,
                        arg: None,
                    }
                    .to_value();
                    self.log.push(format!("0 tail-calls r{reference}#{seq}"));
                    let Some(h) = self.our_caps[slot].as_ref() else {
                        unreachable!("the slot was just read");
                    };
                    self.ours.tail_call(
                        owed.call,
                        &h.cap,
                        PROBE_INTERFACE_ID,
                        CALL_METHOD,
                        params,
                        &[],
                    )
                }
                _ => self
                    .ours
                    .return_exception(owed.call, "no capability to call"),
            },
            _ => self.ours.return_exception(owed.call, "probe refused"),
        };
        if let Err(e) = result {
            self.violation("rpc-app", format!("vat 0: answering a call failed: {e}"));
        }
    }

    // ---------------------------------------------------------------------------------------
    // capnp-rpc's side.

    /// Feeds the calls that reached capnp-rpc's probe objects to the E-order oracle, and
    /// follows what each object returned in the shadow graph.
    fn feed_their_arrivals(&mut self) {
        let log = self.theirs.arrival_log(self.their_seen);
        self.their_seen += log.len();
        for a in log {
            let object = their_object(self.incarnation, a.object);
            let Some(info) = self.calls.get(&(a.ref_id, a.seq)).copied() else {
                self.violation(
                    "e-order",
                    format!(
                        "call #{} on reference {} was never made (arrived at capnp-rpc's \
                         object {object:#x})",
                        a.seq, a.ref_id
                    ),
                );
                continue;
            };
            self.arrived(a.ref_id, a.seq, info, object, THEIRS);
            let returned = match a.answered {
                Answered::Arg => info.arg,
                Answered::Fresh(n) => Some(self.eorder.object(their_object(self.incarnation, n))),
                Answered::Failed => None,
            };
            if let Some(s) = returned {
                let before = self.eorder.violations().len();
                self.eorder
                    .unify(info.answer, s, "capnp-rpc's returned capability");
                let found: Vec<String> = self.eorder.violations()[before..]
                    .iter()
                    .map(|v| v.message.clone())
                    .collect();
                for msg in found {
                    self.violation("e-order", msg);
                }
            }
        }
    }

    fn store_their_cap(&mut self, slot: usize, handle: CapHandle, shadow: ShadowId, what: &str) {
        let reference = self.new_reference();
        self.log.push(format!("1 holds r{reference}: {what}"));
        let old = self.their_caps[slot].replace(TheirCap {
            handle,
            reference,
            next_seq: 0,
            shadow,
        });
        if let Some(old) = old {
            self.their_release(old.handle);
        }
    }

    fn their_release(&mut self, handle: CapHandle) {
        if let Some(Err(e)) = self.guarded("releasing", |t| t.release(handle)) {
            self.violation("rpc-app", format!("vat 1 driver: {e}"));
        }
    }

    fn their_drop(&mut self, handle: AnswerHandle) {
        if let Some(Err(e)) = self.guarded("dropping an answer", |t| t.drop_answer(handle)) {
            self.violation("rpc-app", format!("vat 1 driver: {e}"));
        }
    }

    /// capnp-rpc's side calls the capability in `slot` with the one in `arg` (if any).
    fn their_call(&mut self, slot: usize, arg: Option<usize>, answer_slot: usize) {
        let Some(held) = self.their_caps[slot].as_mut() else {
            return;
        };
        let (reference, seq, target, handle) =
            (held.reference, held.next_seq, held.shadow, held.handle);
        held.next_seq += 1;
        let arg = arg.and_then(|a| self.their_caps[a].as_ref().map(|h| (h.handle, h.shadow)));
        let answer = self.new_call(reference, seq, target, arg.map(|(_, s)| s));
        self.log.push(format!(
            "1 calls r{reference}#{seq}{}",
            if arg.is_some() {
                " with a capability"
            } else {
                ""
            }
        ));
        match self.guarded("calling", |t| {
            t.call(handle, reference, seq, arg.map(|(h, _)| h))
        }) {
            None => {}
            Some(Ok(a)) => {
                let old = self.their_answers[answer_slot].replace(TheirAnswer {
                    handle: a,
                    name: format!("r{reference}#{seq}"),
                    cap_shadow: answer,
                    taken: false,
                });
                if let Some(old) = old {
                    self.their_drop(old.handle);
                }
            }
            Some(Err(e)) => self.violation("rpc-app", format!("vat 1 driver: {e}")),
        }
    }

    /// capnp-rpc's side takes the capability out of a returned answer.
    fn their_take(&mut self, slot: usize, into: usize) {
        let Some(a) = self.their_answers[slot].as_mut() else {
            return;
        };
        if a.taken {
            return;
        }
        let (handle, shadow, what) = (a.handle, a.cap_shadow, format!("the results of {}", a.name));
        match self.guarded("taking results", |t| t.poll_answer(handle)) {
            Some(Ok(Some(Ok((_, cap))))) => {
                if let Some(a) = self.their_answers[slot].as_mut() {
                    a.taken = true;
                }
                self.store_their_cap(into, cap, shadow, &what);
            }
            Some(Err(e)) => self.violation("rpc-app", format!("vat 1 driver: {e}")),
            _ => {}
        }
    }

    // ---------------------------------------------------------------------------------------
    // The workload.

    /// `side` pipelines on the answer in `slot`, keeping the capability in `into`.
    fn pipeline(&mut self, side: VatId, slot: usize, into: usize) {
        if side == OURS {
            if let Some(a) = self.our_answers[slot].as_ref() {
                let (shadow, what) = (a.cap_shadow, format!("a pipeline on {}", a.name));
                let cap = self.ours.pipeline(&a.answer, a.path);
                self.store_our_cap(into, cap, shadow, &what);
            }
        } else if let Some(a) = self.their_answers[slot].as_ref() {
            let (shadow, handle) = (a.cap_shadow, a.handle);
            let what = format!("a pipeline on {}", a.name);
            match self.guarded("pipelining", |t| t.pipeline_cap(handle)) {
                Some(Ok(cap)) => self.store_their_cap(into, cap, shadow, &what),
                Some(Err(e)) => self.violation("rpc-app", format!("vat 1 driver: {e}")),
                None => {}
            }
        }
    }

    /// One of `side`'s filled capability slots, if it has any.
    fn pick_cap(&self, ctx: &Ctx, side: VatId) -> Option<usize> {
        let filled: Vec<usize> = (0..SLOTS)
            .filter(|&i| {
                if side == OURS {
                    self.our_caps[i].is_some()
                } else {
                    self.their_caps[i].is_some()
                }
            })
            .collect();
        pick(ctx, &filled)
    }

    /// One of `side`'s filled answer slots, if it has any.
    fn pick_answer(&self, ctx: &Ctx, side: VatId) -> Option<usize> {
        let filled: Vec<usize> = (0..SLOTS)
            .filter(|&i| {
                if side == OURS {
                    self.our_answers[i].is_some()
                } else {
                    self.their_answers[i].is_some()
                }
            })
            .collect();
        pick(ctx, &filled)
    }

    /// One workload step: an action by one side, then everything sent is queued.
    fn step(&mut self, ctx: &Ctx) {
        let side = ctx.choose(2) as VatId;
        // Where a new capability or answer goes (overwriting gives back the old one).
        let into = ctx.choose(SLOTS as u64) as usize;
        let action = ctx.choose(100);
        match action {
            // Deliver the head of a queue.
            0..=29 => {
                let ready = self.ready();
                if let Some(&from) = ready.get(ctx.choose(ready.len().max(1) as u64) as usize) {
                    self.deliver(from);
                }
            }
            // Call a held capability, perhaps passing another.
            // Call a held capability, perhaps passing another, and perhaps pipeline on the
            // answer at once.
            30..=51 => {
                if let Some(slot) = self.pick_cap(ctx, side) {
                    let arg = if ctx.chance(1, 3) {
                        self.pick_cap(ctx, side).filter(|&a| a != slot)
                    } else {
                        None
                    };
                    if side == OURS {
                        self.our_call(slot, arg, into);
                    } else {
                        self.their_call(slot, arg, into);
                    }
                    if ctx.chance(1, 2) {
                        let to = ctx.choose(SLOTS as u64) as usize;
                        self.pipeline(side, into, to);
                    }
                }
            }
            // Pipeline on an answer (returned or not).
            52..=59 => {
                if let Some(slot) = self.pick_answer(ctx, side) {
                    self.pipeline(side, slot, into);
                }
            }
            // Answer a call (ours; capnp-rpc's probes answer at once), or take the capability
            // out of a returned answer.
            60..=73 => {
                if side == OURS && action <= 69 {
                    let index = ctx.choose(4) as usize;
                    let how = ctx.choose(6);
                    let slot = if how == 3 {
                        self.pick_answer(ctx, OURS)
                    } else {
                        self.pick_cap(ctx, OURS)
                    };
                    self.our_answer(index, how, slot.unwrap_or(0));
                } else if let Some(slot) = self.pick_answer(ctx, side) {
                    if side == OURS {
                        self.our_take(slot, into);
                    } else {
                        self.their_take(slot, into);
                    }
                }
            }
            // Release a capability.
            74..=77 => {
                if let Some(slot) = self.pick_cap(ctx, side) {
                    if side == OURS {
                        if let Some(old) = self.our_caps[slot].take() {
                            self.ours.release(old.cap);
                        }
                    } else if let Some(old) = self.their_caps[slot].take() {
                        self.their_release(old.handle);
                    }
                }
            }
            // Finish (drop) an answer.
            78..=81 => {
                if let Some(slot) = self.pick_answer(ctx, side) {
                    if side == OURS {
                        if let Some(old) = self.our_answers[slot].take() {
                            self.ours.finish(old.answer);
                        }
                    } else if let Some(old) = self.their_answers[slot].take() {
                        self.their_drop(old.handle);
                    }
                }
            }
            // Bootstrap.
            82..=87 => {
                if side == OURS {
                    let answer = self.ours.bootstrap(THEIRS);
                    let shadow = self.eorder.object(their_object(self.incarnation, 0));
                    let cap = self.ours.pipeline(&answer, &[]);
                    self.store_our_cap(into, cap, shadow, "the peer's bootstrap");
                    if ctx.chance(1, 2) {
                        // Keep the bootstrap answer too (its results hold the capability).
                        let slot = ctx.choose(SLOTS as u64) as usize;
                        self.store_our_answer(
                            slot,
                            OurAnswer {
                                answer,
                                name: "bootstrap".into(),
                                path: &[],
                                cap_shadow: shadow,
                            },
                        );
                    } else {
                        self.ours.finish(answer);
                    }
                } else {
                    if let Some(cap) = self.guarded("bootstrapping", CapnpRpcVat::bootstrap) {
                        let shadow = self.eorder.object(our_object(0));
                        self.store_their_cap(into, cap, shadow, "the peer's bootstrap");
                    }
                }
            }
            // Call a held capability with a fresh local probe (kept in a slot too).
            88..=96 => {
                if let Some(slot) = self.pick_cap(ctx, side) {
                    let arg = (0..SLOTS)
                        .map(|i| (into + i) % SLOTS)
                        .find(|&i| i != slot)
                        .unwrap_or(into);
                    if side == OURS {
                        let (cap, shadow) = self.new_our_probe();
                        self.store_our_cap(arg, cap, shadow, "a fresh local probe");
                        self.our_call(slot, Some(arg), into);
                    } else {
                        if let Some((cap, n)) =
                            self.guarded("making a probe", CapnpRpcVat::local_probe_with_id)
                        {
                            let shadow = self.eorder.object(their_object(self.incarnation, n));
                            self.store_their_cap(arg, cap, shadow, "a fresh local probe");
                            self.their_call(slot, Some(arg), into);
                        }
                    }
                }
            }
            // Connection loss.
            _ => {
                if ctx.chance(1, 4) {
                    self.reconnect("connection lost");
                }
            }
        }
        self.settle(Some(ctx));
        if let Some(reason) = self.theirs.abort_reason() {
            // Not on a message of ours (a driver action): capnp-rpc's own doing.
            self.finding(
                Kind::Abort,
                format!("capnp-rpc aborted the connection on its own: {reason}"),
            );
            self.reconnect("aborted");
        }
        self.now += 1_000;
        self.flush_log(ctx);
    }

    /// Drains the network and answers every call, gives back everything on both sides and
    /// drains again, then judges quiescence. Returns false if it could not get quiet.
    fn quiesce(&mut self, ctx: &Ctx) -> bool {
        for phase in 0..2 {
            if phase == 1 {
                for slot in 0..SLOTS {
                    if let Some(h) = self.our_caps[slot].take() {
                        self.ours.release(h.cap);
                    }
                    if let Some(a) = self.our_answers[slot].take() {
                        self.ours.finish(a.answer);
                    }
                    if let Some(h) = self.their_caps[slot].take() {
                        self.their_release(h.handle);
                    }
                    if let Some(a) = self.their_answers[slot].take() {
                        self.their_drop(a.handle);
                    }
                }
                self.settle(None);
            }
            let mut rounds = 0;
            loop {
                rounds += 1;
                if rounds > 100_000 {
                    return false;
                }
                if let Some(&from) = self.ready().first() {
                    self.deliver(from);
                    self.settle(None);
                    continue;
                }
                if !self.owed.is_empty() {
                    // A fresh probe (or the argument), so nothing is left to pipeline on.
                    self.our_answer(0, 0, 0);
                    self.settle(None);
                    continue;
                }
                match self.next_ready_at() {
                    Some(t) => self.now = self.now.max(t),
                    None => break,
                }
            }
            self.flush_log(ctx);
        }
        true
    }

    fn finish(&mut self, ctx: &Ctx) {
        if !self.quiesce(ctx) {
            self.violation(
                "rpc-quiescence",
                "the network never went quiet (a message loop)".into(),
            );
            self.flush_log(ctx);
            return;
        }
        let mut theirs_hold = false;
        // capnp-rpc left questions of ours unreturned: answers of ours that forward to them
        // (pipelined and tail calls, promises) can never return either.
        let stuck: Vec<u32> = self.questions[OURS as usize]
            .iter()
            .filter(|(_, s)| !s.returned)
            .map(|(q, _)| *q)
            .collect();
        for v in self.checker.check_quiescent() {
            let mut msg = v.message.clone();
            if msg.starts_with(&format!("vat {THEIRS} still holds")) {
                // The checker also counts references that an early Finish released.
                let held: Vec<(u32, u64)> = self.views[OURS as usize]
                    .held
                    .iter()
                    .map(|(&id, &n)| (id, n))
                    .collect();
                if held.is_empty() {
                    self.log.push(format!(
                        "oracle note: {msg}, but those references were released by a Finish \
                         with releaseResultCaps that crossed the Return"
                    ));
                    continue;
                }
                msg = format!(
                    "vat {THEIRS} still holds references to exports of vat {OURS} (id, count): \
                     {held:?}"
                );
            }
            let (mut at_fault, mut why) = self.blame_quiescence(&msg);
            if at_fault == OURS && !stuck.is_empty() {
                at_fault = THEIRS;
                why = format!(
                    "{why}; a consequence: capnp-rpc never returned our questions {stuck:?}, \
                     which our answers may wait for"
                );
            }
            theirs_hold |= at_fault == THEIRS;
            self.blame(at_fault, Kind::Quiescence, format!("{msg} ({why})"));
        }
        // Our engine must not keep exports capnp-rpc no longer holds.
        let exports = self.ours.table_sizes(THEIRS).map_or(0, |t| t.exports);
        let held = self.views[OURS as usize].held.len();
        if exports > held {
            self.violation(
                "rpc-quiescence",
                format!(
                    "vat 0 still has {exports} exports, of which capnp-rpc holds references to \
                     {held}"
                ),
            );
        } else if !theirs_hold {
            self.check_our_counts("after everything was given back");
        }
        // Closing the connection must free whatever capnp-rpc still held of ours.
        self.reconnect("end of run");
        self.check_our_counts("after the connection closed");
        self.flush_log(ctx);
    }

    fn check_our_counts(&mut self, when: &str) {
        let (nodes, results, calls) = self.ours.live_counts();
        if nodes + results + calls > 0 {
            self.violation(
                "rpc-quiescence",
                format!(
                    "vat 0 still tracks {nodes} capabilities, {results} results and {calls} \
                     unanswered calls {when}"
                ),
            );
        }
    }

    /// Who is at fault for a quiescence violation of the wire checker.
    fn blame_quiescence(&self, msg: &str) -> (VatId, String) {
        let vat = |s: &str| -> Option<VatId> { s.trim().parse().ok() };
        // "vat F -> vat T: questions still live at the end: [..]"
        if msg.contains("questions still live")
            && let Some(rest) = msg.strip_prefix("vat ")
            && let Some((asker, _)) = rest.split_once(" ->")
            && let Some(asker) = vat(asker)
        {
            let live = &self.questions[asker as usize];
            let unreturned: Vec<u32> = live
                .iter()
                .filter(|(_, s)| !s.returned)
                .map(|(q, _)| *q)
                .collect();
            let unfinished: Vec<u32> = live
                .iter()
                .filter(|(_, s)| s.returned && !s.finished)
                .map(|(q, _)| *q)
                .collect();
            let yourself: Vec<u32> = live
                .iter()
                .filter(|(_, s)| !s.returned && s.yourself)
                .map(|(q, _)| *q)
                .collect();
            let cancelled: Vec<u32> = live
                .iter()
                .filter(|(_, s)| !s.returned && s.finished)
                .map(|(q, _)| *q)
                .collect();
            return match (unreturned.is_empty(), unfinished.is_empty()) {
                (false, true) => (
                    other(asker),
                    format!(
                        "vat {} never returned {unreturned:?}; sent with sendResultsTo.yourself: \
                         {yourself:?}; finished before their Return: {cancelled:?}",
                        other(asker)
                    ),
                ),
                (true, false) => (asker, format!("vat {asker} never finished {unfinished:?}")),
                // Both sides left something (or the record disagrees): ours to look at.
                _ => (
                    OURS,
                    format!("unreturned {unreturned:?}, unfinished {unfinished:?}"),
                ),
            };
        }
        // "vat T still holds references to exports of vat F (id, count): [..]"
        if let Some(rest) = msg.strip_prefix("vat ")
            && let Some((holder, _)) = rest.split_once(" still holds")
            && let Some(holder) = vat(holder)
        {
            return (holder, format!("vat {holder} never released them"));
        }
        // "vat F -> vat T: embargoes never reflected: {..}"
        if msg.contains("embargoes never reflected")
            && let Some((_, rest)) = msg.split_once("-> vat ")
            && let Some((to, _)) = rest.split_once(':')
            && let Some(to) = vat(to)
        {
            return (to, format!("vat {to} never reflected them"));
        }
        (OURS, "unclassified".into())
    }
}
