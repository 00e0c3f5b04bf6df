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
//! Identifiers (`AnyPointer`s in the schema) are `Data` blobs: a recipient is a vat ID and a
//! nonce; a provision is (introducer, connection epoch, nonce); a third-party capability ID
//! adds the provider. The epoch lets Carol refuse provisions from an earlier connection to
//! Alice. Alice's nonces only grow, and her messages to Carol arrive in order, so an `Accept`
//! naming a nonce Carol has already seen whose provision is gone (Alice finished it) fails at
//! once, while one naming a newer nonce waits for its `Provide`.
//! If Bob cannot reach Carol, or the `Accept` fails, Bob keeps using the vine.
//!
//! The vine is an export of its own (a forwarding node), never shared with another export of
//! the same capability, so that Alice can tell when Bob is done with it: a `Call` or a
//! `Release` on the vine (or Bob's connection closing) makes Alice `Finish` the `Provide`
//! (rpc.capnp, `ThirdPartyCapDescriptor.vineId`). Without that a provision that Bob never
//! picks up would live as long as the connection to Carol.

use super::conn::{AnswerKind, AnswerRec, QuestionKind, QuestionRec};
use super::graph::Accepting;
use super::graph::{NodeId, NodeKind, ResultsId, Via};
use super::ids::{ProvideRef, ProvisionKey};
use super::{RpcBug, Vat, VatId, disconnected, failed};
use crate::error::ProtocolError;
use crate::wire::{
    Accept, AnyValue, CapDescriptor, Disembargo, DisembargoContext, ImportId, Message,
    MessageTarget, Provide, QuestionId, ReturnResult,
};
use std::collections::{BTreeMap, VecDeque};

/// What Carol keeps for a `Provide`.
#[derive(Debug)]
pub(crate) struct Provision {
    node: NodeId,
    recipient: VatId,
    /// The introducer's `Provide` question.
    question: QuestionId,
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
    /// Carol's side: the newest provision nonce each introducer (per connection epoch) sent.
    newest: BTreeMap<(VatId, u32), u64>,
    /// Alice's side: the next provision nonce.
    next_nonce: u64,
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
        let nonce = self.handoff.next_nonce;
        self.handoff.next_nonce += 1;
        // The vine: a node of its own, so that its export is not shared.
        self.graph.add_ref(node);
        let vine = self.graph.new_node(NodeKind::Forward {
            to: node,
            embargo: None,
            import: None,
            resolved_by: None,
        });
        let Some(vine_id) = self.export_node(peer, vine) else {
            self.drop_node(vine);
            return None;
        };
        // The export holds the vine now.
        self.drop_node(vine);
        if let Some(conn) = self.conns.get_mut(&peer) {
            conn.vines.insert(
                vine_id,
                ProvideRef {
                    host,
                    question,
                    nonce,
                },
            );
        }
        let conn = self.conns.get_mut(&host)?;
        conn.question_recs.insert(
            question,
            QuestionRec {
                kind: QuestionKind::Provide {
                    node,
                    recipient: peer,
                    vine: vine_id,
                    nonce,
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
                recipient: AnyValue::Data(
                    [peer.to_le_bytes().as_slice(), &nonce.to_le_bytes()].concat(),
                ),
            }),
        );
        let key = ProvisionKey {
            introducer: self.id,
            epoch,
            nonce,
        };
        let mut id = host.to_le_bytes().to_vec();
        id.extend_from_slice(&key.encode());
        Some(CapDescriptor::ThirdPartyHosted {
            id: AnyValue::Data(id),
            vine_id,
        })
    }

    /// Alice's side: Bob (`peer`) called or released the vine `id`: he is done with it, so
    /// the `Provide` it stands for is closed.
    pub(crate) fn vine_touched(&mut self, peer: VatId, id: crate::wire::ExportId) {
        if let Some(p) = self.conns.get_mut(&peer).and_then(|c| c.vines.remove(&id)) {
            self.close_provide(p.host, p.question, peer, id);
        }
    }

    /// Alice's side: finishes the `Provide` `question` to `host` for `recipient`'s vine `id`,
    /// unless it is already finished.
    pub(crate) fn close_provide(
        &mut self,
        host: VatId,
        question: QuestionId,
        peer: VatId,
        id: crate::wire::ExportId,
    ) {
        let open = self.conns.get(&host).is_some_and(|c| {
            matches!(
                c.question_recs.get(&question).map(|r| r.kind),
                Some(QuestionKind::Provide { recipient, vine, .. }) if recipient == peer && vine == id
            ) && c.questions.get(question).is_some_and(|s| !s.finish_sent)
        });
        if open {
            self.finish_plain(host, question);
        }
    }

    /// Alice's side: the `Provide` `question` to `host` is over; its vine no longer stands for
    /// it.
    pub(crate) fn forget_vine(
        &mut self,
        host: VatId,
        question: QuestionId,
        recipient: VatId,
        vine: crate::wire::ExportId,
    ) {
        if let Some(conn) = self.conns.get_mut(&recipient)
            && conn
                .vines
                .get(&vine)
                .is_some_and(|p| p.host == host && p.question == question)
        {
            conn.vines.remove(&vine);
        }
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
            Some((provider, key))
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
                let caps: Vec<NodeId> = self
                    .import_cap_table(peer, &payload.cap_table)?
                    .into_iter()
                    .map(|(node, _)| node)
                    .collect();
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
        provision: Option<ProvideRef>,
    ) {
        let finished = |conn: &super::conn::Conn, q: QuestionId| {
            conn.questions.get(q).is_none_or(|s| s.finish_sent)
        };
        // The `Provide` the named promise's resolution stood for: with two provisions of one
        // capability to one recipient, the other one is not it. If it is over (we finished it
        // because the recipient gave up the vine, or the provider returned it), the provision
        // is gone at the provider, and so is the embargo's purpose.
        if let Some(p) = provision {
            let open = self.conns.get(&p.host).and_then(|conn| {
                match conn.question_recs.get(&p.question).map(|r| r.kind) {
                    Some(QuestionKind::Provide { nonce, node, .. })
                        if nonce == p.nonce && !finished(conn, p.question) =>
                    {
                        Some(node)
                    }
                    _ => None,
                }
            });
            // Normally the route ends at the provider. If the capability has moved since we
            // named the `Provide` (our own acceptance of it fell back to its vine), the
            // provider still holds the recipient's `Accept` for that `Provide`: release it,
            // naming the capability as the `Provide` did.
            let target = if p.host == host {
                Some(target)
            } else {
                open.and_then(|n| match self.graph.kind(self.graph.latest(n)) {
                    Some(NodeKind::Import { peer, id }) if *peer == p.host => {
                        Some(MessageTarget::ImportedCap(*id))
                    }
                    Some(NodeKind::RemotePromise { peer, target, .. }) if *peer == p.host => {
                        Some(target.clone())
                    }
                    _ => None,
                })
            };
            if let (Some(_), Some(target)) = (open, target) {
                self.send(
                    p.host,
                    Message::Disembargo(Disembargo {
                        target,
                        context: DisembargoContext::Provide(p.question),
                    }),
                );
            }
            return;
        }
        let withdrawn = self.conns.get(&host).is_some_and(|conn| {
            conn.question_recs.iter().any(|(q, rec)| match rec.kind {
                QuestionKind::Provide {
                    node: n, recipient, ..
                } => recipient == from && self.graph.latest(n) == node && finished(conn, *q),
                _ => false,
            })
        });
        if withdrawn {
            // We already finished that Provide (the recipient released or called the vine):
            // the provision is gone at the provider, and so is the embargo's purpose.
            return;
        }
        let question = self.conns.get(&host).and_then(|conn| {
            conn.question_recs
                .iter()
                .filter(|(q, _)| !finished(conn, **q))
                .find_map(|(q, rec)| match rec.kind {
                    QuestionKind::Provide {
                        node: n, recipient, ..
                    } if recipient == from && self.graph.latest(n) == node => Some(*q),
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
        let (recipient, nonce) = data(&p.recipient)
            .filter(|b| b.len() == 12)
            .and_then(|b| {
                Some((
                    u32::from_le_bytes(b.get(0..4)?.try_into().ok()?),
                    u64::from_le_bytes(b.get(4..12)?.try_into().ok()?),
                ))
            })
            .ok_or_else(|| violation("malformed Provide.recipient"))?;
        let conn = self.conns.get_mut(&peer).ok_or(ProtocolError::Closed)?;
        conn.answers.on_question(p.question_id)?;
        conn.answer_recs.insert(
            p.question_id,
            AnswerRec {
                kind: AnswerKind::Provide,
                result_exports: Vec::new(),
                pipelines: BTreeMap::new(),
                result_provides: BTreeMap::new(),
                result_pins: BTreeMap::new(),
            },
        );
        let key = ProvisionKey {
            introducer: peer,
            epoch: conn.epoch,
            nonce,
        };
        // The peer chose the nonce: the last one has no successor.
        let Some(next) = nonce.checked_add(1) else {
            return Err(violation(format!("Provide nonce {nonce} is out of range")));
        };
        let newest = self.handoff.newest.entry((peer, key.epoch)).or_insert(0);
        if nonce < *newest || self.handoff.provisions.contains_key(&key) {
            return Err(violation(format!(
                "Provide nonce {nonce} is not newer than the last one"
            )));
        }
        *newest = next;
        let node = self.target_node(peer, &p.target, "Provide.target")?;
        self.handoff.provisions.insert(
            key,
            Provision {
                node,
                recipient,
                question: p.question_id,
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
                    pipelines: BTreeMap::new(),
                    result_provides: BTreeMap::new(),
                    result_pins: BTreeMap::new(),
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
        let provide_to_come = self
            .handoff
            .newest
            .get(&(key.introducer, key.epoch))
            .is_none_or(|&newest| key.nonce >= newest);
        if introducer_live && provide_to_come {
            // The Provide is still on its way.
            let earlier = self.handoff.waiting.insert(
                key,
                Waiting {
                    from: peer,
                    results,
                    embargo: a.embargo,
                },
            );
            if let Some(old) = earlier {
                // As for a held Accept (`accept_provision`): the newer one waits instead.
                self.settle(old.results, Err(failed("accepted twice")));
                self.drop_results(old.results);
            }
        } else if introducer_live {
            self.settle(results, Err(failed("the provision was withdrawn")));
            self.drop_results(results);
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
        let (node, question) = (p.node, p.question);
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
                question,
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
        let key = self.provision_of(peer, question).ok_or_else(|| {
            violation(format!("Disembargo.provide for unknown Provide {question}"))
        })?;
        let Some(p) = self.handoff.provisions.get_mut(&key) else {
            return Ok(());
        };
        p.disembargoed = true;
        if let Some(results) = p.held.take() {
            self.complete_accept(key, results);
        }
        Ok(())
    }

    /// Carol's side: the `Provide` answer `question` from `peer` is gone.
    pub(crate) fn drop_provision(&mut self, peer: VatId, question: QuestionId) {
        if let Some(key) = self.provision_of(peer, question) {
            self.remove_provision(key);
        }
    }

    /// The provision made by `peer`'s `Provide` question `question` on the current connection.
    fn provision_of(&self, peer: VatId, question: QuestionId) -> Option<ProvisionKey> {
        let epoch = self.conns.get(&peer)?.epoch;
        self.handoff
            .provisions
            .iter()
            .find(|(k, p)| k.introducer == peer && k.epoch == epoch && p.question == question)
            .map(|(k, _)| *k)
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
        self.handoff
            .newest
            .retain(|&(introducer, _), _| introducer != peer);
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

    /// The nodes and results records the handoff state holds a reference to (for the
    /// engine's invariant checks).
    pub(crate) fn handoff_holds(&self) -> (Vec<NodeId>, Vec<ResultsId>) {
        let nodes = self.handoff.provisions.values().map(|p| p.node).collect();
        let results = self
            .handoff
            .provisions
            .values()
            .filter_map(|p| p.held)
            .chain(self.handoff.waiting.values().map(|w| w.results))
            .collect();
        (nodes, results)
    }

    /// Provisions and early accepts still pending (for quiescence).
    pub fn pending_handoffs(&self) -> usize {
        self.handoff.provisions.len() + self.handoff.waiting.len()
    }
}
