//! Oracles for Cap'n Proto RPC, judged from the messages on the wire and from what the
//! application objects observed — never from an engine's tables.
//!
//! - [`WireChecker`] replays the `rpc.capnp` lifecycle rules over every delivered message of
//!   every connection: question IDs (no reuse before `Return` and `Finish`, one `Return`, one
//!   `Finish`), export reference counts (a `Release` never exceeds what was received;
//!   `releaseParamCaps` / `releaseResultCaps` count as releases), a promise is resolved at most
//!   once, every `senderLoopback` is reflected, and no connection is ever aborted. At the end of
//!   a quiet run it also checks quiescence: no live question, no export reference, no pending
//!   embargo.
//! - [`EOrder`] checks E-order at the target: calls made on one reference arrive in the order
//!   they were made (gaps allowed: a call may fail or be cancelled), and at the object a shadow
//!   reference graph says the reference designates (mirage/capnp-rpc's fuzzer oracle).

use crate::Violation;
use captp::wire::{CapDescriptor, DisembargoContext, Message, ReturnResult};
use std::collections::{BTreeMap, BTreeSet};

/// A vat, as the network names it.
pub type VatId = u32;

#[derive(Clone, Copy, Debug, Default)]
struct QuestionState {
    returned: bool,
    finished: bool,
    /// Sent with `sendResultsTo.yourself`: the callee keeps the results.
    yourself: bool,
}

/// What one side of a connection (the asker/exporter `from`, towards `to`) has on the wire.
#[derive(Debug, Default)]
struct Direction {
    /// Questions asked by `from`.
    questions: BTreeMap<u32, QuestionState>,
    /// Export IDs of `from` that `to` has received, with their counts.
    exports: BTreeMap<u32, u64>,
    /// Exports sent as `senderPromise` and already resolved.
    resolved: BTreeSet<u32>,
    promises: BTreeSet<u32>,
    /// Exports sent in the params of each question (for `releaseParamCaps`).
    param_exports: BTreeMap<u32, Vec<u32>>,
    /// Exports sent in the results of each answer by `from` (for `releaseResultCaps`).
    result_exports: BTreeMap<u32, Vec<u32>>,
    /// `senderLoopback` embargoes sent by `from`, not yet reflected.
    embargoes: BTreeSet<u32>,
}

/// The wire checker. Feed it every message in delivery order with [`WireChecker::delivered`],
/// and every connection loss with [`WireChecker::disconnected`].
#[derive(Debug, Default)]
pub struct WireChecker {
    dirs: BTreeMap<(VatId, VatId), Direction>,
    violations: Vec<Violation>,
    messages: u64,
}

const ORACLE: &str = "rpc-wire";

impl WireChecker {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn messages(&self) -> u64 {
        self.messages
    }

    fn flag(&mut self, from: VatId, to: VatId, msg: impl std::fmt::Display) {
        if self.violations.len() < 20 {
            self.violations.push(
                Violation::new(ORACLE, format!("vat {from} -> vat {to}: {msg}"))
                    .object(format!("vat {from} -> vat {to}")),
            );
        }
    }

    /// Both directions of a connection are gone (with every message in flight).
    pub fn disconnected(&mut self, a: VatId, b: VatId) {
        self.dirs.remove(&(a, b));
        self.dirs.remove(&(b, a));
    }

    fn count_exports(&mut self, from: VatId, to: VatId, table: &[CapDescriptor]) -> Vec<u32> {
        let dir = self.dirs.entry((from, to)).or_default();
        let mut ids = Vec::new();
        for d in table {
            match d {
                CapDescriptor::SenderHosted(id) => {
                    *dir.exports.entry(*id).or_default() += 1;
                    ids.push(*id);
                }
                CapDescriptor::SenderPromise(id) => {
                    *dir.exports.entry(*id).or_default() += 1;
                    dir.promises.insert(*id);
                    ids.push(*id);
                }
                CapDescriptor::ThirdPartyHosted { vine_id, .. } => {
                    *dir.exports.entry(*vine_id).or_default() += 1;
                    ids.push(*vine_id);
                }
                CapDescriptor::None
                | CapDescriptor::ReceiverHosted(_)
                | CapDescriptor::ReceiverAnswer(_) => {}
            }
        }
        ids
    }

    /// `to` gives back `n` references to `from`'s export `id`.
    fn release(&mut self, from: VatId, to: VatId, id: u32, n: u64, why: &str) {
        let dir = self.dirs.entry((from, to)).or_default();
        let held = dir.exports.get(&id).copied().unwrap_or(0);
        if n > held {
            self.flag(
                to,
                from,
                format_args!("{why} releases {n} references to export {id}, but holds {held}"),
            );
            return;
        }
        if held == n {
            dir.exports.remove(&id);
            dir.resolved.remove(&id);
            dir.promises.remove(&id);
        } else {
            dir.exports.insert(id, held - n);
        }
    }

    fn ask(&mut self, from: VatId, to: VatId, q: u32, kind: &str) {
        let dir = self.dirs.entry((from, to)).or_default();
        if dir.questions.contains_key(&q) {
            self.flag(
                from,
                to,
                format_args!("{kind} reuses question {q} before its Return and Finish"),
            );
            return;
        }
        dir.questions.insert(q, QuestionState::default());
    }

    /// One message, delivered from `from` to `to`.
    pub fn delivered(&mut self, from: VatId, to: VatId, msg: &Message) {
        self.messages += 1;
        match msg {
            Message::Abort(e) => self.flag(from, to, format_args!("aborted: {}", e.reason)),
            Message::Bootstrap(b) => self.ask(from, to, b.question_id, "Bootstrap"),
            Message::Call(c) => {
                self.ask(from, to, c.question_id, "Call");
                if c.send_results_to == captp::wire::SendResultsTo::Yourself
                    && let Some(s) = self
                        .dirs
                        .entry((from, to))
                        .or_default()
                        .questions
                        .get_mut(&c.question_id)
                {
                    s.yourself = true;
                }
                let ids = self.count_exports(from, to, &c.params.cap_table);
                self.dirs
                    .entry((from, to))
                    .or_default()
                    .param_exports
                    .insert(c.question_id, ids);
            }
            Message::Provide(p) => self.ask(from, to, p.question_id, "Provide"),
            Message::Accept(a) => self.ask(from, to, a.question_id, "Accept"),
            Message::Return(r) => {
                // `from` answers `to`'s question.
                let q = r.answer_id;
                let state = self
                    .dirs
                    .entry((to, from))
                    .or_default()
                    .questions
                    .get(&q)
                    .copied();
                match state {
                    None => self.flag(from, to, format_args!("Return for unknown question {q}")),
                    Some(s) if s.returned => {
                        self.flag(from, to, format_args!("second Return for question {q}"))
                    }
                    Some(s)
                        if s.yourself
                            && matches!(
                                r.result,
                                ReturnResult::Results(_) | ReturnResult::TakeFromOtherQuestion(_)
                            ) =>
                    {
                        // The results of a `yourself` call stay with the callee; sending them
                        // (or pointing at yet another question) leaves the caller's
                        // `takeFromOtherQuestion` with nothing to take.
                        self.flag(
                            from,
                            to,
                            format_args!(
                                "Return for question {q}, sent with sendResultsTo.yourself, \
                                 is not resultsSentElsewhere"
                            ),
                        )
                    }
                    Some(_) => {}
                }
                let ids = match &r.result {
                    ReturnResult::Results(p) => self.count_exports(from, to, &p.cap_table),
                    _ => Vec::new(),
                };
                let dir = self.dirs.entry((from, to)).or_default();
                dir.result_exports.insert(q, ids);
                let asked = self.dirs.entry((to, from)).or_default();
                let params = asked.param_exports.remove(&q).unwrap_or_default();
                if let Some(s) = asked.questions.get_mut(&q) {
                    s.returned = true;
                    if s.finished || r.no_finish_needed {
                        asked.questions.remove(&q);
                    }
                }
                if r.release_param_caps {
                    for id in params {
                        self.release(to, from, id, 1, "Return.releaseParamCaps");
                    }
                }
            }
            Message::Finish(f) => {
                let q = f.question_id;
                let dir = self.dirs.entry((from, to)).or_default();
                match dir.questions.get_mut(&q) {
                    None => {}
                    Some(s) if s.finished => {
                        self.flag(from, to, format_args!("second Finish for question {q}"))
                    }
                    Some(s) => {
                        s.finished = true;
                        if s.returned {
                            dir.questions.remove(&q);
                        }
                    }
                }
                let results = self
                    .dirs
                    .entry((to, from))
                    .or_default()
                    .result_exports
                    .remove(&q)
                    .unwrap_or_default();
                if f.release_result_caps {
                    for id in results {
                        self.release(to, from, id, 1, "Finish.releaseResultCaps");
                    }
                }
            }
            Message::Release(r) => {
                self.release(to, from, r.id, u64::from(r.reference_count), "Release")
            }
            Message::Resolve(r) => {
                let dir = self.dirs.entry((from, to)).or_default();
                if dir.promises.contains(&r.promise_id) && !dir.resolved.insert(r.promise_id) {
                    self.flag(
                        from,
                        to,
                        format_args!("second Resolve for promise {}", r.promise_id),
                    );
                }
                if let captp::wire::Resolution::Cap(d) = &r.resolution {
                    self.count_exports(from, to, std::slice::from_ref(d));
                }
            }
            Message::Disembargo(d) => match d.context {
                DisembargoContext::SenderLoopback(e) => {
                    self.dirs.entry((from, to)).or_default().embargoes.insert(e);
                }
                DisembargoContext::ReceiverLoopback(e) => {
                    if !self
                        .dirs
                        .entry((to, from))
                        .or_default()
                        .embargoes
                        .remove(&e)
                    {
                        self.flag(
                            from,
                            to,
                            format_args!("receiverLoopback {e} reflects no senderLoopback"),
                        );
                    }
                }
                DisembargoContext::Accept | DisembargoContext::Provide(_) => {}
            },
            Message::Unimplemented(_)
            | Message::Join(_)
            | Message::ObsoleteSave(_)
            | Message::ObsoleteDelete(_) => {}
        }
    }

    /// What the checker found so far.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// Marks what it found since the last call as told at `at` (the world calls it as it
    /// writes the trace lines of the deliveries it judged).
    pub fn mark_unmarked(&mut self, at: simkit::At) {
        mark(&mut self.violations, at);
    }

    /// Quiescence, once the network is quiet and every vat has given back what it held: no
    /// question is live, no export is referenced, no embargo waits.
    pub fn check_quiescent(&self) -> Vec<Violation> {
        let mut v = Vec::new();
        for (&(from, to), dir) in &self.dirs {
            let live: Vec<_> = dir.questions.keys().take(5).collect();
            if !live.is_empty() {
                v.push(Violation::new(
                    "rpc-quiescence",
                    format!("vat {from} -> vat {to}: questions still live at the end: {live:?}"),
                ));
            }
            let held: Vec<_> = dir.exports.iter().take(5).collect();
            if !held.is_empty() {
                v.push(Violation::new(
                    "rpc-quiescence",
                    format!(
                        "vat {to} still holds references to exports of vat {from} (id, count): {held:?}"
                    ),
                ));
            }
            if !dir.embargoes.is_empty() {
                v.push(Violation::new(
                    "rpc-quiescence",
                    format!(
                        "vat {from} -> vat {to}: embargoes never reflected: {:?}",
                        dir.embargoes
                    ),
                ));
            }
        }
        v
    }
}

/// A node of the shadow reference graph.
pub type ShadowId = usize;

/// The E-order oracle with its shadow reference graph (union-find over "designates the same
/// object").
#[derive(Debug, Default)]
pub struct EOrder {
    parent: Vec<ShadowId>,
    object: Vec<Option<u64>>,
    /// The highest sequence number that arrived per reference (comparing with the highest,
    /// not the last, catches `3, 1, 2`: call 2 arrived after call 3).
    last_seq: BTreeMap<u64, u64>,
    violations: Vec<Violation>,
    arrivals: u64,
}

impl EOrder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A shadow for a reference whose object is not known yet.
    pub fn unknown(&mut self) -> ShadowId {
        self.parent.push(self.parent.len());
        self.object.push(None);
        self.parent.len() - 1
    }

    /// A shadow for a reference to `object`.
    pub fn object(&mut self, object: u64) -> ShadowId {
        let s = self.unknown();
        self.object[s] = Some(object);
        s
    }

    fn find(&mut self, mut s: ShadowId) -> ShadowId {
        while self.parent[s] != s {
            self.parent[s] = self.parent[self.parent[s]];
            s = self.parent[s];
        }
        s
    }

    /// Records that `a` and `b` designate the same object (e.g. an answer's capability and
    /// the capability its callee returned).
    pub fn unify(&mut self, a: ShadowId, b: ShadowId, context: &str) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return;
        }
        match (self.object[ra], self.object[rb]) {
            (Some(x), Some(y)) if x != y => {
                self.flag(format!(
                    "{context}: one reference would designate both object {x:#x} and {y:#x}"
                ));
            }
            (None, Some(y)) => self.object[ra] = Some(y),
            _ => {}
        }
        self.parent[rb] = ra;
    }

    /// Whether the object `s` designates is known.
    pub fn resolved(&mut self, s: ShadowId) -> bool {
        let root = self.find(s);
        self.object[root].is_some()
    }

    /// Whether `a` and `b` are known to designate the same object.
    pub fn same(&mut self, a: ShadowId, b: ShadowId) -> bool {
        self.find(a) == self.find(b)
    }

    fn flag(&mut self, msg: String) {
        if self.violations.len() < 20 {
            self.violations.push(Violation::new("e-order", msg));
        }
    }

    /// Call `seq` made on reference `reference` (whose shadow is `target`) arrived at
    /// `object`.
    pub fn arrived(&mut self, reference: u64, seq: u64, target: ShadowId, object: u64) {
        self.arrivals += 1;
        if let Some(&last) = self.last_seq.get(&reference)
            && seq <= last
        {
            self.flag(format!(
                "call #{seq} on reference {reference} arrived at object {object:#x} after call #{last}"
            ));
        }
        let highest = self.last_seq.entry(reference).or_insert(seq);
        *highest = (*highest).max(seq);
        let root = self.find(target);
        match self.object[root] {
            Some(o) if o != object => self.flag(format!(
                "call #{seq} on reference {reference} arrived at object {object:#x}, but the \
                 reference designates object {o:#x}"
            )),
            Some(_) => {}
            None => self.object[root] = Some(object),
        }
    }

    pub fn arrivals(&self) -> u64 {
        self.arrivals
    }

    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// Marks what it found since the last call as told at `at`.
    pub fn mark_unmarked(&mut self, at: simkit::At) {
        mark(&mut self.violations, at);
    }
}

fn mark(violations: &mut [Violation], at: simkit::At) {
    for v in violations.iter_mut().filter(|v| v.at.is_none()) {
        v.at = Some(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use captp::wire::{Bootstrap, Finish, Return};

    fn ret(q: u32) -> Message {
        Message::Return(Return {
            answer_id: q,
            release_param_caps: false,
            no_finish_needed: false,
            result: ReturnResult::Canceled,
        })
    }

    fn finish(q: u32) -> Message {
        Message::Finish(Finish {
            question_id: q,
            release_result_caps: false,
            require_early_cancellation_workaround: false,
        })
    }

    fn boot(q: u32) -> Message {
        Message::Bootstrap(Bootstrap {
            question_id: q,
            deprecated_object_id: Default::default(),
        })
    }

    fn call(q: u32, send_results_to: captp::wire::SendResultsTo) -> Message {
        Message::Call(captp::wire::Call {
            question_id: q,
            target: captp::wire::MessageTarget::ImportedCap(0),
            interface_id: 1,
            method_id: 0,
            allow_third_party_tail_call: false,
            no_promise_pipelining: false,
            only_promise_pipeline: false,
            params: Default::default(),
            send_results_to,
        })
    }

    #[test]
    fn e_order_compares_with_the_highest_arrival_not_the_last() {
        let mut e = EOrder::new();
        let target = e.object(7);
        e.arrived(1, 3, target, 7);
        e.arrived(1, 1, target, 7);
        assert_eq!(e.violations().len(), 1);
        e.arrived(1, 2, target, 7);
        assert_eq!(e.violations().len(), 2, "{:?}", e.violations());
        assert!(e.violations()[1].message.contains("call #2 on reference 1"));
        e.arrived(1, 4, target, 7);
        assert_eq!(e.violations().len(), 2);
    }

    #[test]
    fn a_yourself_call_must_return_results_sent_elsewhere() {
        use captp::wire::SendResultsTo::{Caller, Yourself};
        let mut w = WireChecker::new();
        let take = |q| {
            Message::Return(Return {
                answer_id: q,
                release_param_caps: false,
                no_finish_needed: false,
                result: ReturnResult::TakeFromOtherQuestion(7),
            })
        };
        w.delivered(1, 2, &call(0, Caller));
        w.delivered(2, 1, &take(0));
        assert!(w.violations().is_empty(), "{:?}", w.violations());
        w.delivered(1, 2, &call(1, Yourself));
        w.delivered(
            2,
            1,
            &Message::Return(Return {
                answer_id: 1,
                release_param_caps: false,
                no_finish_needed: false,
                result: ReturnResult::ResultsSentElsewhere,
            }),
        );
        assert!(w.violations().is_empty(), "{:?}", w.violations());
        w.delivered(1, 2, &call(2, Yourself));
        w.delivered(2, 1, &take(2));
        assert_eq!(w.violations().len(), 1, "{:?}", w.violations());
        assert!(w.violations()[0].message.contains("sendResultsTo.yourself"));
    }

    #[test]
    fn question_reuse_before_finish_is_caught_and_proper_reuse_is_not() {
        let mut w = WireChecker::new();
        w.delivered(1, 2, &boot(0));
        w.delivered(2, 1, &ret(0));
        w.delivered(1, 2, &finish(0));
        w.delivered(1, 2, &boot(0));
        assert!(w.violations().is_empty(), "{:?}", w.violations());
        w.delivered(2, 1, &ret(0));
        w.delivered(1, 2, &boot(0));
        assert_eq!(w.violations().len(), 1);
        assert!(w.violations()[0].message.contains("reuses question 0"));
    }

    #[test]
    fn over_release_and_leaks_are_caught() {
        let mut w = WireChecker::new();
        w.delivered(1, 2, &boot(0));
        w.delivered(
            2,
            1,
            &Message::Return(Return {
                answer_id: 0,
                release_param_caps: false,
                no_finish_needed: false,
                result: ReturnResult::Results(captp::wire::Payload {
                    content: Default::default(),
                    cap_table: vec![CapDescriptor::SenderHosted(7)],
                }),
            }),
        );
        w.delivered(1, 2, &finish(0));
        assert_eq!(w.check_quiescent().len(), 1, "vat 1 still holds export 7");
        let release = |n| {
            Message::Release(captp::wire::Release {
                id: 7,
                reference_count: n,
            })
        };
        w.delivered(1, 2, &release(2));
        assert_eq!(w.violations().len(), 1, "over-release");
        w.delivered(1, 2, &release(1));
        assert!(w.check_quiescent().is_empty());
    }

    #[test]
    fn e_order_catches_reordering_and_wrong_targets() {
        let mut e = EOrder::new();
        let s = e.unknown();
        e.arrived(1, 0, s, 0xa);
        e.arrived(1, 2, s, 0xa);
        assert!(e.violations().is_empty());
        e.arrived(1, 1, s, 0xa);
        assert_eq!(e.violations().len(), 1);
        e.arrived(2, 0, s, 0xb);
        assert_eq!(e.violations().len(), 2);
    }
}
