//! What each side said and saw on the current connection, as the oracles need it to judge a
//! vat by what it knew when it acted: each vat's own view of its exports (`View`), what its
//! `Return`s and `Resolve`s said and when it asked each question (IDs are reused: what an ID
//! meant depends on when), and the state of every question. All of it ends with the
//! connection.

use super::{OURS, THEIRS, other};
use captp::VatId;
use captp::wire::{
    CapDescriptor, Message, MessageTarget, Payload, PipelineOp, Resolution, ReturnResult,
    SendResultsTo,
};
use std::collections::{BTreeMap, BTreeSet};

/// A question's state, by its asker's account of what crossed.
#[derive(Clone, Copy, Default)]
pub struct QState {
    pub returned: bool,
    pub finished: bool,
    /// Sent with `sendResultsTo.yourself`.
    pub yourself: bool,
}

/// One vat's own view of its exports on the connection: what it had sent and what it had
/// received when it sent each message. The wire checker judges in delivery order, which
/// misjudges messages that cross on the wire; this view judges each sender by what it knew.
/// It also applies one rule the checker lacks: a `Finish` with `releaseResultCaps` that the
/// callee receives *before* sending the `Return` releases the capabilities of that `Return`
/// ("all capabilities that were in the results should be considered released", rpc.capnp;
/// capnp-rpc relies on it and never releases them).
#[derive(Default)]
pub struct View {
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
    pub fn sent(&mut self, msg: &Message) -> Vec<String> {
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
    pub fn received(&mut self, msg: &Message) {
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

    /// References the peer holds to each export, by this vat's account.
    pub fn held(&self) -> &BTreeMap<u32, u64> {
        &self.held
    }
}

/// Adds `x` to what was said about `id`, in order.
fn record<T>(map: &mut BTreeMap<u32, Vec<T>>, id: u32, x: T) {
    map.entry(id).or_default().push(x);
}

/// What both vats said and saw on the current connection (indexed by vat).
#[derive(Default)]
pub struct Said {
    /// Each vat's own view of its exports.
    views: [View; 2],
    /// What each vat's `Return`s (by the other's question) and `Resolve`s (by its own export)
    /// said, indexed by the vat that said it, each with its delivery position.
    returns: [BTreeMap<u32, Vec<(u64, Payload)>>; 2],
    resolves: [BTreeMap<u32, Vec<(u64, CapDescriptor)>>; 2],
    /// When each vat asked each of its questions (the same ID, reused), by asker.
    asked: [BTreeMap<u32, Vec<u64>>; 2],
    /// Questions per asking vat, for blaming what quiescence finds.
    questions: [BTreeMap<u32, QState>; 2],
}

impl Said {
    /// `from` sends `msg`; returns the rules it breaks by its own account.
    pub fn sent(&mut self, from: VatId, msg: &Message) -> Vec<String> {
        self.views[from as usize].sent(msg)
    }

    /// `msg` from `from` was delivered at position `pos`.
    pub fn delivered(&mut self, from: VatId, pos: u64, msg: &Message) {
        self.views[other(from) as usize].received(msg);
        self.track_question(from, msg);
        let f = from as usize;
        match msg {
            Message::Return(r) => {
                if let ReturnResult::Results(p) = &r.result {
                    record(&mut self.returns[f], r.answer_id, (pos, p.clone()));
                }
            }
            Message::Resolve(r) => {
                if let Resolution::Cap(d) = &r.resolution {
                    record(&mut self.resolves[f], r.promise_id, (pos, d.clone()));
                }
            }
            Message::Call(c) => record(&mut self.asked[f], c.question_id, pos),
            Message::Bootstrap(b) => record(&mut self.asked[f], b.question_id, pos),
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
                let yourself = c.send_results_to == SendResultsTo::Yourself;
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

    /// The questions `asker` asked that are still live and in a state `f` accepts, in order.
    pub fn questions_where(&self, asker: VatId, f: impl Fn(&QState) -> bool) -> Vec<u32> {
        self.questions[asker as usize]
            .iter()
            .filter(|(_, s)| f(s))
            .map(|(q, _)| *q)
            .collect()
    }

    /// Our vat's view of its exports.
    pub fn our_view(&self) -> &View {
        &self.views[OURS as usize]
    }

    /// Whether `msg` is capnp-rpc resolving an export it had described as `senderHosted`
    /// while it was an unresolved promise (by capnp-rpc's own view).
    pub fn resolves_hosted_promise(&self, msg: &Message) -> bool {
        matches!(msg, Message::Resolve(r)
            if self.views[THEIRS as usize].hosted_promises.contains(&r.promise_id))
    }

    /// Whether `said`'s `Return`s and `Resolve`s delivered before position `before` say that
    /// `target` (a message target the other vat used at position `at`, naming an export or an
    /// answer of `said`) designates a capability hosted by that other vat. IDs are reused: an
    /// answer's `Return` is the first after the other vat last asked that question before
    /// `at`; an export's `Resolve` is the last before `before`.
    pub fn loops_back(&self, said: VatId, target: &MessageTarget, at: u64, before: u64) -> bool {
        let (returns, resolves) = (&self.returns[said as usize], &self.resolves[said as usize]);
        let resolution = |id: &u32| {
            resolves.get(id).and_then(|v| {
                v.iter()
                    .rev()
                    .find(|(p, _)| *p < before)
                    .map(|(_, d)| d.clone())
            })
        };
        let mut desc = match target {
            MessageTarget::ImportedCap(id) => resolution(id),
            MessageTarget::PromisedAnswer(pa) => {
                let path: Option<Vec<u16>> = pa
                    .transform
                    .iter()
                    .map(|op| match op {
                        PipelineOp::GetPointerField(i) => Some(*i),
                        PipelineOp::Noop => None,
                    })
                    .collect();
                let asked = self.asked[other(said) as usize]
                    .get(&pa.question_id)
                    .and_then(|v| v.iter().rev().find(|&&p| p < at))
                    .copied()
                    .unwrap_or(0);
                returns
                    .get(&pa.question_id)
                    .and_then(|v| v.iter().find(|(p, _)| *p > asked && *p < before))
                    .and_then(|(_, p)| {
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
                Some(CapDescriptor::SenderPromise(id)) => desc = resolution(&id),
                _ => return false,
            }
        }
        false
    }
}
