//! Three-party handoff (level 3, in the form of the `rpc.capnp` this crate speaks).
//!
//! Alice (the introducer) holds a capability hosted by Carol and sends it to Bob:
//! 1. Alice sends Carol `Provide{q, target, recipient: Bob}` and Bob a `thirdPartyHosted`
//!    descriptor naming Carol and the provision, with a *vine*: an ordinary export of the
//!    capability by Alice, which Bob holds until the handoff completes.
//! 2. Bob sends Carol `Accept{q', provision, embargo}`. Calls Bob makes meanwhile wait.
//! 3. Carol matches the `Accept` with the `Provide` (either may arrive first: they travel on
//!    different connections), and returns the capability to Bob, and an empty result to
//!    Alice's `Provide`, after which Alice finishes it.
//! 4. If Bob had sent calls towards the capability through Alice (on a promise that resolved
//!    to the third-party capability), they must reach Carol first: Bob sets `embargo` and
//!    sends `Disembargo{accept}` down the old path; Alice passes it on behind those calls as
//!    `Disembargo{provide: q}` to Carol, who only then returns the `Accept`.
//!
//! Identifiers (`AnyPointer`s in the schema) are `Data` blobs: a recipient is a vat ID; a
//! provision is (introducer, connection epoch, question); a third-party capability ID adds the
//! provider. The epoch lets Carol refuse provisions from an earlier connection to Alice.
//! If Bob cannot reach Carol, or the `Accept` fails, Bob keeps using the vine.

use super::conn::{AnswerKind, AnswerRec, QuestionKind, QuestionRec};
use super::graph::{Delivery, NodeId, NodeKind, ResultsId, Via};
use super::{RpcBug, Vat, VatId, disconnected, failed};
use crate::error::ProtocolError;
use crate::wire::{
    Accept, AnyValue, CapDescriptor, Disembargo, DisembargoContext, ImportId, Message,
    MessageTarget, Provide, QuestionId, ReturnResult,
};
use std::collections::{BTreeMap, VecDeque};

/// A capability Bob is accepting from Carol.
#[derive(Debug)]
pub(crate) struct Accepting {
    /// The vine (held until the handoff completes).
    pub vine: NodeId,
    pub provider: VatId,
    pub provision: ProvisionKey,
    /// Calls waiting for the handoff.
    pub queue: VecDeque<Delivery>,
    /// Calls went towards it through the introducer: the `Accept` must be embargoed.
    pub embargo: bool,
    /// The `Accept` has been sent.
    pub sent: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ProvisionKey {
    pub introducer: VatId,
    pub epoch: u32,
    pub question: QuestionId,
}

impl ProvisionKey {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(12);
        v.extend_from_slice(&self.introducer.to_le_bytes());
        v.extend_from_slice(&self.epoch.to_le_bytes());
        v.extend_from_slice(&self.question.to_le_bytes());
        v
    }

    fn decode(b: &[u8]) -> Option<Self> {
        let word = |i: usize| Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?));
        Some(ProvisionKey {
            introducer: word(0)?,
            epoch: word(4)?,
            question: word(8)?,
        })
    }
}

/// What Carol keeps for a `Provide`.
#[derive(Debug)]
pub(crate) struct Provision {
    node: NodeId,
    recipient: VatId,
    /// An embargoed `Accept` waiting for the introducer's `Disembargo{provide}`.
    held: Option<ResultsId>,
    disembargoed: bool,
}

/// An `Accept` that arrived before its `Provide`.
#[derive(Debug)]
struct Waiting {
    from: VatId,
    results: ResultsId,
    embargo: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Handoff {
    provisions: BTreeMap<ProvisionKey, Provision>,
    waiting: BTreeMap<ProvisionKey, Waiting>,
    /// Handoff nodes whose `Accept` has not been sent yet.
    to_accept: Vec<NodeId>,
}

fn violation(what: impl Into<String>) -> ProtocolError {
    ProtocolError::PeerViolation { what: what.into() }
}

fn data(v: &AnyValue) -> Option<&[u8]> {
    match v {
        AnyValue::Data(d) => Some(d),
        _ => None,
    }
}

impl Vat {
    /// Alice's side: if `node` (an import from `host`) can be handed to `peer` directly,
    /// sends the `Provide` and returns the descriptor.
    pub(crate) fn try_introduce(
        &mut self,
        peer: VatId,
        host: VatId,
        import: ImportId,
        node: NodeId,
    ) -> Option<CapDescriptor> {
        if !self.config.third_party_handoff
            || !self.conns.get(&peer)?.third_party
            || !self.conns.get(&host)?.third_party
        {
            return None;
        }
        let conn = self.conns.get_mut(&host)?;
        let epoch = conn.epoch;
        let question = conn.questions.ask().ok()?;
        conn.question_recs.insert(
            question,
            QuestionRec {
                kind: QuestionKind::Provide {
                    node,
                    recipient: peer,
                },
                param_exports: Vec::new(),
            },
        );
        self.graph.add_ref(node);
        self.send(
            host,
            Message::Provide(Provide {
                question_id: question,
                target: MessageTarget::ImportedCap(import),
                recipient: AnyValue::Data(peer.to_le_bytes().to_vec()),
            }),
        );
        let vine_id = self.export_node(peer, node)?;
        let key = ProvisionKey {
            introducer: self.id,
            epoch,
            question,
        };
        let mut id = host.to_le_bytes().to_vec();
        id.extend_from_slice(&key.encode());
        Some(CapDescriptor::ThirdPartyHosted {
            id: AnyValue::Data(id),
            vine_id,
        })
    }

    /// Bob's side: a `thirdPartyHosted` descriptor from `peer`.
    pub(crate) fn import_third_party(
        &mut self,
        peer: VatId,
        id: &AnyValue,
        vine_id: crate::wire::ExportId,
    ) -> Result<(NodeId, Via), ProtocolError> {
        let (vine, _) = self.import_cap(peer, &CapDescriptor::SenderHosted(vine_id))?;
        let parsed = data(id).and_then(|b| {
            let provider = u32::from_le_bytes(b.get(0..4)?.try_into().ok()?);
            let key = ProvisionKey::decode(b.get(4..)?)?;
            (b.len() == 16).then_some((provider, key))
        });
        let Some((provider, provision)) = parsed else {
            self.drop_node(vine);
            return Err(violation("malformed third-party capability ID"));
        };
        if provision.introducer != peer {
            self.drop_node(vine);
            return Err(violation(format!(
                "third-party capability introduced by vat {peer} names introducer {}",
                provision.introducer
            )));
        }
        if provider == self.id || !self.conns.contains_key(&provider) {
            // We cannot (or need not) reach the provider: use the vine.
            return Ok((vine, Via::Peer));
        }
        let node = self.graph.new_node(NodeKind::ThirdParty(Accepting {
            vine,
            provider,
            provision,
            queue: VecDeque::new(),
            embargo: false,
            sent: false,
        }));
        self.handoff.to_accept.push(node);
        Ok((node, Via::ThirdParty))
    }

    /// Bob's side: a promise through which calls went to `peer` resolved to a handoff node;
    /// those calls must reach the provider before the `Accept` completes.
    pub(crate) fn embargo_handoff(&mut self, peer: VatId, old_target: MessageTarget, to: NodeId) {
        if self.bug(RpcBug::AcceptWithoutEmbargo) {
            return;
        }
        let to = self.graph.latest(to);
        let Some(NodeKind::ThirdParty(acc)) = self.graph.kind_mut(to) else {
            return;
        };
        if acc.sent {
            return;
        }
        acc.embargo = true;
        self.send(
            peer,
            Message::Disembargo(Disembargo {
                target: old_target,
                context: DisembargoContext::Accept,
            }),
        );
    }

    /// Sends the `Accept`s of new handoff nodes (after the message that introduced them has
    /// been fully processed, so that the embargo flag is known).
    pub(crate) fn flush_resolutions(&mut self) {
        for node in std::mem::take(&mut self.handoff.to_accept) {
            let Some(NodeKind::ThirdParty(acc)) = self.graph.kind_mut(node) else {
                continue;
            };
            if acc.sent {
                continue;
            }
            let (provider, provision, embargo) = (acc.provider, acc.provision, acc.embargo);
            let Some(conn) = self.conns.get_mut(&provider) else {
                self.accept_fallback_node(node);
                continue;
            };
            let Ok(question) = conn.questions.ask() else {
                self.accept_fallback_node(node);
                continue;
            };
            conn.question_recs.insert(
                question,
                QuestionRec {
                    kind: QuestionKind::Accept { node },
                    param_exports: Vec::new(),
                },
            );
            if let Some(NodeKind::ThirdParty(acc)) = self.graph.kind_mut(node) {
                acc.sent = true;
            }
            self.graph.add_ref(node);
            self.send(
                provider,
                Message::Accept(Accept {
                    question_id: question,
                    provision: AnyValue::Data(provision.encode()),
                    embargo,
                }),
            );
        }
    }

    /// Bob's side: the `Accept` returned.
    pub(crate) fn on_accept_return(
        &mut self,
        peer: VatId,
        question: QuestionId,
        node: NodeId,
        result: ReturnResult,
    ) -> Result<(), ProtocolError> {
        let outcome = match result {
            ReturnResult::Results(payload) => {
                let index = payload.content.cap_index_at(&[]).map(|i| i as usize);
                let mut caps = Vec::new();
                for desc in &payload.cap_table {
                    caps.push(self.import_cap(peer, desc)?.0);
                }
                let cap = index.and_then(|i| caps.get(i).copied());
                for &c in &caps {
                    if Some(c) != cap {
                        self.drop_node(c);
                    }
                }
                cap
            }
            _ => None,
        };
        self.finish_plain(peer, question);
        match outcome {
            Some(cap) => self.resolve_node(node, cap, Via::Peer),
            None => self.accept_fallback_node(node),
        }
        // The Accept question's reference.
        self.drop_node(node);
        Ok(())
    }

    /// The `Accept` failed or could not be sent: the handoff node falls back to its vine.
    pub(crate) fn accept_failed(&mut self, node: NodeId) {
        self.accept_fallback_node(node);
        self.drop_node(node);
    }

    fn accept_fallback_node(&mut self, node: NodeId) {
        let vine = match self.graph.kind(node) {
            Some(NodeKind::ThirdParty(acc)) => acc.vine,
            _ => return,
        };
        self.graph.add_ref(vine);
        self.resolve_node(node, vine, Via::Peer);
    }

    /// Alice's side: a `Disembargo{accept}` from `from` reached the import (from `host`) its
    /// target resolves to; pass it on to the provider behind the calls that went before it.
    pub(crate) fn forward_accept_disembargo(
        &mut self,
        from: VatId,
        node: NodeId,
        host: VatId,
        target: MessageTarget,
    ) {
        let question = self.conns.get(&host).and_then(|conn| {
            conn.question_recs
                .iter()
                .find_map(|(q, rec)| match rec.kind {
                    QuestionKind::Provide { node: n, recipient }
                        if recipient == from && self.graph.latest(n) == node =>
                    {
                        Some(*q)
                    }
                    _ => None,
                })
        });
        match question {
            Some(q) => self.send(
                host,
                Message::Disembargo(Disembargo {
                    target,
                    context: DisembargoContext::Provide(q),
                }),
            ),
            None => self.protocol_error(
                from,
                "Disembargo.accept target is not being provided to the sender",
            ),
        }
    }

    /// Carol's side: a `Provide` from the introducer `peer`.
    pub(crate) fn on_provide(&mut self, peer: VatId, p: Provide) -> Result<(), ProtocolError> {
        let recipient = data(&p.recipient)
            .and_then(|b| Some(u32::from_le_bytes(b.try_into().ok()?)))
            .ok_or_else(|| violation("malformed Provide.recipient"))?;
        let conn = self.conns.get_mut(&peer).ok_or(ProtocolError::Closed)?;
        conn.answers.on_question(p.question_id)?;
        conn.answer_recs.insert(
            p.question_id,
            AnswerRec {
                kind: AnswerKind::Provide,
                result_exports: Vec::new(),
            },
        );
        let key = ProvisionKey {
            introducer: peer,
            epoch: conn.epoch,
            question: p.question_id,
        };
        let node = self.target_node(peer, &p.target, "Provide.target")?;
        self.handoff.provisions.insert(
            key,
            Provision {
                node,
                recipient,
                held: None,
                disembargoed: false,
            },
        );
        if let Some(w) = self.handoff.waiting.remove(&key) {
            self.accept_provision(key, w.from, w.results, w.embargo);
        }
        Ok(())
    }

    /// Carol's side: an `Accept` from `peer`.
    pub(crate) fn on_accept(&mut self, peer: VatId, a: Accept) -> Result<(), ProtocolError> {
        let key = data(&a.provision)
            .filter(|b| b.len() == 12)
            .and_then(ProvisionKey::decode)
            .ok_or_else(|| violation("malformed Accept.provision"))?;
        let conn = self.conns.get_mut(&peer).ok_or(ProtocolError::Closed)?;
        conn.answers.on_question(a.question_id)?;
        let results = self.graph.new_results();
        if let Some(conn) = self.conns.get_mut(&peer) {
            conn.answer_recs.insert(
                a.question_id,
                AnswerRec {
                    kind: AnswerKind::Results {
                        results,
                        yourself: false,
                    },
                    result_exports: Vec::new(),
                },
            );
        }
        self.graph.results_mut(results).return_to = Some((peer, a.question_id));
        self.graph.add_results_ref(results);
        if self.handoff.provisions.contains_key(&key) {
            self.accept_provision(key, peer, results, a.embargo);
            return Ok(());
        }
        let introducer_live = self
            .conns
            .get(&key.introducer)
            .is_some_and(|c| c.epoch == key.epoch);
        if introducer_live {
            // The Provide is still on its way.
            self.handoff.waiting.insert(
                key,
                Waiting {
                    from: peer,
                    results,
                    embargo: a.embargo,
                },
            );
        } else {
            self.settle(
                results,
                Err(disconnected("the introducer's connection is gone")),
            );
            self.drop_results(results);
        }
        Ok(())
    }

    /// Matches an `Accept` (whose results we hold a reference to) with its provision.
    fn accept_provision(
        &mut self,
        key: ProvisionKey,
        from: VatId,
        results: ResultsId,
        embargo: bool,
    ) {
        let Some(p) = self.handoff.provisions.get_mut(&key) else {
            return;
        };
        if p.recipient != from {
            self.settle(
                results,
                Err(failed("this capability was provided to another vat")),
            );
            self.drop_results(results);
            return;
        }
        if embargo && !p.disembargoed {
            if let Some(old) = p.held.replace(results) {
                self.settle(old, Err(failed("accepted twice")));
                self.drop_results(old);
            }
            return;
        }
        self.complete_accept(key, results);
    }

    fn complete_accept(&mut self, key: ProvisionKey, results: ResultsId) {
        let Some(p) = self.handoff.provisions.get(&key) else {
            return;
        };
        let node = p.node;
        self.graph.add_ref(node);
        self.settle(results, Ok((AnyValue::Capability(0), vec![node])));
        self.drop_results(results);
        // Tell the introducer the recipient has it.
        let live = self
            .conns
            .get(&key.introducer)
            .is_some_and(|c| c.epoch == key.epoch);
        if live {
            self.send_return_result(
                key.introducer,
                key.question,
                ReturnResult::Results(crate::wire::Payload::default()),
                Vec::new(),
            );
        }
    }

    /// Carol's side: the introducer's `Disembargo{provide}`.
    pub(crate) fn on_provide_disembargo(
        &mut self,
        peer: VatId,
        question: QuestionId,
    ) -> Result<(), ProtocolError> {
        let epoch = self.conns.get(&peer).ok_or(ProtocolError::Closed)?.epoch;
        let key = ProvisionKey {
            introducer: peer,
            epoch,
            question,
        };
        let p = self.handoff.provisions.get_mut(&key).ok_or_else(|| {
            violation(format!("Disembargo.provide for unknown Provide {question}"))
        })?;
        p.disembargoed = true;
        if let Some(results) = p.held.take() {
            self.complete_accept(key, results);
        }
        Ok(())
    }

    /// Carol's side: the `Provide` answer `question` from `peer` is gone.
    pub(crate) fn drop_provision(&mut self, peer: VatId, question: QuestionId) {
        let Some(epoch) = self.conns.get(&peer).map(|c| c.epoch) else {
            return;
        };
        let key = ProvisionKey {
            introducer: peer,
            epoch,
            question,
        };
        self.remove_provision(key);
    }

    fn remove_provision(&mut self, key: ProvisionKey) {
        if let Some(p) = self.handoff.provisions.remove(&key) {
            if let Some(results) = p.held {
                self.settle(results, Err(failed("the provision was withdrawn")));
                self.drop_results(results);
            }
            self.drop_node(p.node);
        }
    }

    /// Carol's side: the connection to an introducer closed.
    pub(crate) fn drop_provisions_from(&mut self, peer: VatId) {
        let keys: Vec<ProvisionKey> = self
            .handoff
            .provisions
            .keys()
            .filter(|k| k.introducer == peer)
            .copied()
            .collect();
        for key in keys {
            self.remove_provision(key);
        }
        let waiting: Vec<ProvisionKey> = self
            .handoff
            .waiting
            .keys()
            .filter(|k| k.introducer == peer)
            .copied()
            .collect();
        for key in waiting {
            if let Some(w) = self.handoff.waiting.remove(&key) {
                self.settle(
                    w.results,
                    Err(disconnected("the introducer's connection is gone")),
                );
                self.drop_results(w.results);
            }
        }
    }

    /// Provisions and early accepts still pending (for quiescence).
    pub fn pending_handoffs(&self) -> usize {
        self.handoff.provisions.len() + self.handoff.waiting.len()
    }
}
