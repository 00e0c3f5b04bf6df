//! The blame rules of `rpc-vs-capnp-rpc`. Whatever an oracle finds is reported as a violation
//! only when our engine is at fault; what capnp-rpc does wrong is a *finding* about that
//! crate: a trace line `capnp-finding` and the metrics `capnp_rpc_findings` (and one per
//! kind), never a violation, so it cannot fail our sweeps. The rules, per oracle:
//!
//! - Wire: a rule broken by a message is the fault of its sender. The export and promise
//!   rules are judged by the sender's own view when it sent the message (`view.rs`: what it
//!   had sent and received by then), because the checker, judging in delivery order, misreads
//!   messages that cross, and lacks rpc.capnp's rule that a `Finish` with `releaseResultCaps`
//!   releases the capabilities of a `Return` it crosses; references the checker still counts
//!   for that reason (and the "second Resolve" it then sees for a freed and reused export ID)
//!   are nobody's fault. An `Unimplemented` is the fault of its sender: both vats implement
//!   level 1, and our vat sends only level-1 messages. A message that does not decode is
//!   ours either way: we sent it, or our decoder refuses what the reference implementation
//!   wrote.
//! - E-order, call `late` on a reference arrived at an object of the host vat before the
//!   earlier call `early` (by the oracle, or by the mirror here, which compares with every
//!   earlier arrival on the reference, not only the last, and beyond the oracle's first 20
//!   violations). With the other vat `x`:
//!   1. If some direction of the link carried `late` before `early` (comparing the i-th time
//!      each crossed that direction), the sender of the first such inversion reordered them.
//!   2. If the host sent `early` to `x` and then a `Disembargo.senderLoopback` on the same
//!      target, and `x` reflected that embargo before sending `early` back (or never sent it
//!      back), the reflecting vat `x` is at fault.
//!   3. If `x` sent `early` and `late` on to different targets (the first pair of its
//!      crossings that differ, `late` after `early`), the host had said, by then, that the
//!      first target resolves (over any number of hops) to a capability `x` hosts itself, and
//!      `x` sent no `senderLoopback` down that target in between, `x` owed an embargo: the
//!      resolution looped back to it (rpc.capnp's Tribble 4-way race; C++ applies
//!      `RequireEmbargoWrapper` here).
//!   4. If `x` did embargo that route, and the host echoed `early` back to `x` before
//!      reflecting the embargo, and reflected it before `x` sent `late`, then `early` was in
//!      `x`'s hands when the embargo lifted: `x` owed `early` first.
//!   5. Otherwise the inversion happened inside the host (it delivered `late` without waiting
//!      for `early`: a missing or lifted embargo, or a call left unrun).
//!
//!   A call that reaches an object its reference does not designate is the fault of the vat
//!   that hosts the object and delivered it. A call that was never made, and a capability
//!   capnp-rpc's probe returned that contradicts the shadow graph, are violations.
//! - Aborts: our vat aborting on a message of capnp-rpc's is a finding when the error is the
//!   peer's fault by our engine's account and the message broke a rule, by the wire checker
//!   or by capnp-rpc's own view (a `Resolve` for an export it had described as `senderHosted`
//!   while it was an unresolved promise); otherwise it is ours. capnp-rpc aborting on a
//!   message of ours is ours, unless capnp-rpc's own words show the message was legitimate
//!   (so far, a `Disembargo.senderLoopback` that broke no wire rule, to a target that
//!   capnp-rpc itself resolved, perhaps over several hops, to a capability of ours: what
//!   capnproto PR #1656 fixed in C++ and capnproto-rust #529 suspects in capnp-rpc).
//!   capnp-rpc aborting on a driver action is its own doing.
//! - Panics: a panic inside capnp-rpc (handling a message, a driver call, or being dropped)
//!   is a finding; that vat is given up and the connection ends.
//! - Quiescence, once everything is drained and given back: a question left unreturned is
//!   the callee's fault, one left unfinished the asker's (both at once: ours to look at); an
//!   export reference still held is the holder's, unless our own view shows capnp-rpc holds
//!   none (an early `Finish` released them: a note in the trace, nobody's fault); an embargo
//!   never reflected is the fault of the vat that should have reflected it; anything else is
//!   ours. When capnp-rpc left questions of ours unreturned, what our side leaves (answers and
//!   references waiting for those questions) is counted as a consequence, a finding. Our vat
//!   keeping more exports than capnp-rpc holds references to is ours; so is our vat still
//!   tracking anything once everything was given back (unless capnp-rpc was found to hold
//!   something) and, always, after the final disconnect.

use super::link::{Crossing, DuelLink};
use super::view::Said;
use super::{OURS, THEIRS, other};
use crate::Violation;
use crate::rpc::app::{Arrival, Journal};
use crate::rpc::link::summary;
use captp::wire::{DisembargoContext, Message};
use captp::{ProtocolError, VatId};
use models::rpc::{EOrder, WireChecker};
use simkit::Ctx;
use std::collections::BTreeMap;
use std::fmt;

/// What kind of oracle a finding about capnp-rpc comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    EOrder,
    Wire,
    Abort,
    Quiescence,
    Panic,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::EOrder => "e-order",
            Kind::Wire => "rpc-wire",
            Kind::Abort => "rpc-abort",
            Kind::Quiescence => "rpc-quiescence",
            Kind::Panic => "no-panic",
        }
    }
}

/// What the blame rules read: what crossed the link and what each side said.
pub struct Evidence<'a> {
    pub link: &'a DuelLink,
    pub said: &'a Said,
}

impl<'a> Evidence<'a> {
    pub fn new(link: &'a DuelLink, said: &'a Said) -> Self {
        Evidence { link, said }
    }
}

/// The oracles' findings and whose fault each is: the violations (ours), the findings
/// (capnp-rpc's), the trace lines of the run, the wire checker, and the E-order mirror.
#[derive(Default)]
pub struct Judge {
    checker: WireChecker,
    violations: Vec<Violation>,
    findings: Vec<(Kind, String)>,
    log: Vec<String>,
    /// The last sequence number that arrived per reference (mirrors the E-order oracle).
    last_seq: BTreeMap<u64, u64>,
    /// The highest sequence number that arrived per reference.
    max_seq: BTreeMap<u64, u64>,
}

impl Journal for Judge {
    fn narrate(&mut self, line: fmt::Arguments<'_>) {
        self.log.push(line.to_string());
    }

    fn violation(&mut self, oracle: &'static str, msg: String) {
        Judge::violation(self, oracle, msg);
    }
}

impl Judge {
    /// A trace line.
    pub fn note(&mut self, line: String) {
        self.log.push(line);
    }

    /// Writes the trace lines so far to the run's trace.
    pub fn flush(&mut self, ctx: &Ctx) {
        for line in self.log.drain(..) {
            ctx.trace("rpc", format_args!("{line}"));
        }
    }

    pub fn violation(&mut self, oracle: &'static str, msg: String) {
        self.log.push(format!("violation {oracle}: {msg}"));
        self.violations.push(Violation::new(oracle, msg));
    }

    pub fn finding(&mut self, kind: Kind, msg: String) {
        self.log
            .push(format!("capnp-finding {}: {msg}", kind.name()));
        self.findings.push((kind, msg));
    }

    /// Records a problem found by `kind`'s oracle, as a violation if `at_fault` is our vat and
    /// as a finding about capnp-rpc otherwise.
    pub fn blame(&mut self, at_fault: VatId, kind: Kind, msg: String) {
        if at_fault == OURS {
            self.violation(kind.name(), msg);
        } else {
            self.finding(kind, msg);
        }
    }

    /// How many findings there are of `kind` (of every kind: `None`).
    pub fn findings(&self, kind: Option<Kind>) -> u64 {
        self.findings
            .iter()
            .filter(|f| kind.is_none_or(|k| f.0 == k))
            .count() as u64
    }

    pub fn take_violations(&mut self) -> Vec<Violation> {
        std::mem::take(&mut self.violations)
    }

    /// The wire checker's account of `msg`, delivered from `from` to `to`: what it flags is
    /// the sender's fault, except a second `Resolve`, which is judged by the sender's own view
    /// when it was sent (`View`): the checker counts references an early `Finish` released,
    /// and so misses that the export ID was freed and reused. Returns whether it flagged
    /// anything else.
    pub fn wire(&mut self, from: VatId, to: VatId, msg: &Message) -> bool {
        let before = self.checker.violations().len();
        self.checker.delivered(from, to, msg);
        let flagged: Vec<String> = self.checker.violations()[before..]
            .iter()
            .map(|v| v.message.clone())
            .filter(|m| !m.contains("second Resolve for promise"))
            .collect();
        for f in &flagged {
            self.blame(from, Kind::Wire, f.clone());
        }
        !flagged.is_empty()
    }

    /// The connection is gone (for the wire checker).
    pub fn disconnected(&mut self) {
        self.checker.disconnected(OURS, THEIRS);
    }

    /// Call `a` arrived at an object of `host`: to the E-order oracle, and whoever reordered
    /// it is blamed.
    pub fn arrived(
        &mut self,
        eorder: &mut EOrder,
        evidence: &Evidence<'_>,
        a: &Arrival,
        host: VatId,
    ) {
        let (reference, seq, object) = (a.reference, a.seq, a.object);
        self.log
            .push(format!("r{reference}#{seq} arrived at {object:#x}"));
        let before = eorder.violations().len();
        let last = self.last_seq.get(&reference).copied();
        eorder.arrived(reference, seq, a.info.target, object);
        self.last_seq.insert(reference, seq);
        let found: Vec<String> = eorder.violations()[before..]
            .iter()
            .map(|v| v.message.clone())
            .collect();
        // Beyond the oracle, which compares with the last call that arrived: a call that
        // arrives after any later call on its reference (also once the oracle stopped
        // recording; it keeps 20).
        let max = self.max_seq.get(&reference).copied();
        self.max_seq
            .insert(reference, max.map_or(seq, |m| m.max(seq)));
        let inverted = match (last.filter(|&l| seq <= l), max.filter(|&m| seq <= m)) {
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
        if let Some((late, msg)) = inverted {
            let msg = msg.unwrap_or_else(|| {
                format!(
                    "call #{seq} on reference {reference} arrived at object {object:#x} after \
                     call #{late}"
                )
            });
            let (at_fault, why) = inversion(evidence, reference, seq, late, host);
            self.blame(at_fault, Kind::EOrder, format!("{msg} ({why})"));
        }
    }

    /// Our vat aborted the connection on a message from capnp-rpc; `broke` says whether that
    /// message broke a rule by the oracles' account.
    pub fn our_abort(&mut self, e: &ProtocolError, broke: bool) {
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

    /// capnp-rpc shut the connection down on our message `sent`; `flagged` says whether that
    /// message broke a wire rule.
    pub fn their_abort(&mut self, said: &Said, reason: &str, sent: &Message, flagged: bool) {
        let msg = format!(
            "capnp-rpc aborted the connection after our {}: {reason}",
            summary(sent)
        );
        let loopback = match sent {
            Message::Disembargo(d) => {
                matches!(d.context, DisembargoContext::SenderLoopback(_))
                    && said.loops_back(THEIRS, &d.target, u64::MAX, u64::MAX)
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

    /// Judges what the wire checker finds at quiescence; returns whether capnp-rpc was found
    /// to hold something (then what our vat still tracks may be its consequence).
    pub fn quiescence(&mut self, said: &Said) -> bool {
        let mut theirs_hold = false;
        // capnp-rpc left questions of ours unreturned: answers of ours that forward to them
        // (pipelined and tail calls, promises) can never return either.
        let stuck = said.questions_where(OURS, |s| !s.returned);
        for v in self.checker.check_quiescent() {
            let mut msg = v.message.clone();
            if msg.starts_with(&format!("vat {THEIRS} still holds")) {
                // The checker also counts references that an early Finish released.
                let held: Vec<(u32, u64)> = said
                    .our_view()
                    .held()
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
            let (mut at_fault, mut why) = quiescence_fault(said, &msg);
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
        theirs_hold
    }
}

/// Who reordered call `early` after call `late` on `reference`, which arrived at an object
/// of `host` in the wrong order.
fn inversion(
    evidence: &Evidence<'_>,
    reference: u64,
    early: u64,
    late: u64,
    host: VatId,
) -> (VatId, String) {
    let e = evidence.link.crossings(reference, early);
    let l = evidence.link.crossings(reference, late);
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
        for lb in evidence
            .link
            .loopbacks
            .iter()
            .filter(|lb| lb.from == host && lb.pos > out.pos && lb.target == out.target)
        {
            let Some(embargo) = lb.embargo() else {
                continue;
            };
            if let Some(r) = evidence.link.reflection(x, lb.pos, embargo)
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
    // The other vat changed the route of the reference's calls: it sent `early` on to one
    // target and `late`, which came the same way, on to another. If the host had told it
    // that the first target resolved to a capability the other vat hosts itself, that
    // resolution looped back to it, and it owed an embargo (a `senderLoopback` down the
    // first target before sending `late` elsewhere), whatever that capability resolved to
    // further: rpc.capnp's Tribble 4-way race (C++ applies `RequireEmbargoWrapper` here).
    let e_out: Vec<&Crossing> = e.iter().filter(|c| c.from == x).collect();
    let l_out: Vec<&Crossing> = l.iter().filter(|c| c.from == x).collect();
    if let Some((ce, cl)) = e_out
        .iter()
        .zip(&l_out)
        .find(|(ce, cl)| ce.target != cl.target)
        && cl.pos > ce.pos
        && evidence.said.loops_back(host, &ce.target, ce.pos, cl.pos)
        && !evidence.link.loopbacks.iter().any(|lb| {
            lb.from == x
                && lb.pos > ce.pos
                && lb.pos < cl.pos
                && lb.target == ce.target
                && lb.embargo().is_some()
        })
    {
        return (
            x,
            format!(
                "vat {x} sent call #{late} on a new route without an embargo, though vat \
                 {host} had resolved the route of call #{early} to a capability of vat {x}'s \
                 own (the Tribble 4-way race)"
            ),
        );
    }
    // The other vat did embargo that route, and the host echoed `early` back to it before
    // reflecting the embargo: `early` was in the other vat's hands when the embargo lifted,
    // so it owed `early` first.
    if let Some((ce, cl)) = e_out
        .iter()
        .zip(&l_out)
        .find(|(ce, cl)| ce.target != cl.target)
    {
        for lb in evidence.link.loopbacks.iter().filter(|lb| {
            lb.from == x && lb.pos > ce.pos && lb.pos < cl.pos && lb.target == ce.target
        }) {
            let Some(embargo) = lb.embargo() else {
                continue;
            };
            let reflected = evidence.link.reflection(host, lb.pos, embargo);
            let echoed = e.iter().find(|c| c.from == host && c.pos > ce.pos);
            if let (Some(r), Some(back)) = (reflected, echoed)
                && back.pos < r.pos
                && r.pos < cl.pos
            {
                return (
                    x,
                    format!(
                        "vat {x} sent call #{late} once its embargo {embargo} lifted, though \
                         call #{early} had come back to it before the reflection"
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

/// Who is at fault for a quiescence violation of the wire checker.
fn quiescence_fault(said: &Said, msg: &str) -> (VatId, String) {
    let vat = |s: &str| -> Option<VatId> { s.trim().parse().ok() };
    // "vat F -> vat T: questions still live at the end: [..]"
    if msg.contains("questions still live")
        && let Some(rest) = msg.strip_prefix("vat ")
        && let Some((asker, _)) = rest.split_once(" ->")
        && let Some(asker) = vat(asker)
    {
        let unreturned = said.questions_where(asker, |s| !s.returned);
        let unfinished = said.questions_where(asker, |s| s.returned && !s.finished);
        let yourself = said.questions_where(asker, |s| !s.returned && s.yourself);
        let cancelled = said.questions_where(asker, |s| !s.returned && s.finished);
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
