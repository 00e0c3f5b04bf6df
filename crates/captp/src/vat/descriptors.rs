//! Capabilities crossing a connection: turning nodes into `CapDescriptor`s (counting exports)
//! and descriptors back into nodes (counting imports), and the messages that carry them.

use super::conn::{AnswerKind, QuestionKind, QuestionRec};
use super::graph::{CallMsg, NodeId, NodeKind, ResultsId, Via};
use super::{Vat, VatId, disconnected, failed};
use crate::error::ProtocolError;
use crate::wire::{
    AnswerId, AnyValue, Bootstrap, Call, CapDescriptor, Exception, ExportId, Finish, Message,
    MessageTarget, Payload, Resolution, Resolve, Return, ReturnResult, SendResultsTo,
};
use std::collections::BTreeMap;

impl Vat {
    /// The descriptor for sending `node` to `peer`, counting the export it makes.
    pub(crate) fn export_cap(&mut self, peer: VatId, node: NodeId) -> CapDescriptor {
        // A resolved promise is sent as what it resolved to: a `senderPromise` must never name
        // an export that is already resolved.
        let node = self.graph.latest(node);
        enum Shape {
            Direct(CapDescriptor),
            ThirdPartyCandidate(VatId, crate::wire::ImportId),
            Hosted,
            Promise(Option<Exception>),
        }
        let shape = match self.graph.kind(node) {
            None | Some(NodeKind::Null) => Shape::Direct(CapDescriptor::None),
            Some(NodeKind::Import { peer: p, id }) if *p == peer => {
                Shape::Direct(CapDescriptor::ReceiverHosted(*id))
            }
            Some(NodeKind::RemotePromise {
                peer: p, target, ..
            }) if *p == peer => Shape::Direct(match target {
                MessageTarget::ImportedCap(id) => CapDescriptor::ReceiverHosted(*id),
                MessageTarget::PromisedAnswer(pa) => CapDescriptor::ReceiverAnswer(pa.clone()),
            }),
            Some(NodeKind::Import { peer: host, id }) => Shape::ThirdPartyCandidate(*host, *id),
            Some(NodeKind::Local(_)) => Shape::Hosted,
            Some(NodeKind::Broken(e)) => Shape::Promise(Some(e.clone())),
            Some(
                NodeKind::RemotePromise { .. }
                | NodeKind::LocalPromise { .. }
                | NodeKind::ThirdParty(_)
                | NodeKind::Forward { .. }
                | NodeKind::Pinned { .. },
            ) => Shape::Promise(None),
        };
        let (promise, broken) = match shape {
            Shape::Direct(desc) => return desc,
            Shape::ThirdPartyCandidate(host, id) => {
                if let Some(desc) = self.try_introduce(peer, host, id, node) {
                    return desc;
                }
                (false, None)
            }
            Shape::Hosted => (false, None),
            Shape::Promise(broken) => (true, broken),
        };
        let already = self
            .conns
            .get(&peer)
            .is_some_and(|c| c.exports.find(&node).is_some());
        let Some(id) = self.export_node(peer, node) else {
            return CapDescriptor::None;
        };
        if !promise {
            return CapDescriptor::SenderHosted(id);
        }
        match broken {
            // A broken capability travels as a promise resolved at once to its exception
            // (once: a later send of the same export is already resolved).
            Some(_) if already => {}
            Some(e) => self.send_later(
                peer,
                Message::Resolve(Resolve {
                    promise_id: id,
                    resolution: Resolution::Exception(e),
                }),
            ),
            None => {
                if let Some(n) = self.graph.node_mut(node) {
                    n.promised_to.insert((peer, id));
                }
            }
        }
        CapDescriptor::SenderPromise(id)
    }

    /// Adds one reference to the export of `node` on `peer` (creating it, and taking a
    /// reference to the node, the first time).
    pub(crate) fn export_node(&mut self, peer: VatId, node: NodeId) -> Option<ExportId> {
        let conn = self.conns.get_mut(&peer)?;
        let fresh = conn.exports.find(&node).is_none();
        let id = conn.exports.export(node).ok()?;
        if fresh {
            self.graph.add_ref(node);
        }
        Some(id)
    }

    /// The node a received descriptor designates (a new reference), and where it lives.
    pub(crate) fn import_cap(
        &mut self,
        peer: VatId,
        desc: &CapDescriptor,
    ) -> Result<(NodeId, Via), ProtocolError> {
        let Some(conn) = self.conns.get_mut(&peer) else {
            return Err(ProtocolError::Closed);
        };
        Ok(match desc {
            CapDescriptor::None => (self.graph.new_node(NodeKind::Null), Via::Nothing),
            CapDescriptor::SenderHosted(id) | CapDescriptor::SenderPromise(id) => {
                conn.imports.on_received(*id)?;
                let node = match conn.import_nodes.get(id) {
                    Some(&node) if self.graph.node(node).is_some() => {
                        self.graph.add_ref(node);
                        node
                    }
                    _ => {
                        let kind = if matches!(desc, CapDescriptor::SenderHosted(_)) {
                            NodeKind::Import { peer, id: *id }
                        } else {
                            NodeKind::RemotePromise {
                                peer,
                                target: MessageTarget::ImportedCap(*id),
                                import: Some(*id),
                                results: None,
                                used: false,
                            }
                        };
                        let node = self.graph.new_node(kind);
                        if let Some(conn) = self.conns.get_mut(&peer) {
                            conn.import_nodes.insert(*id, node);
                        }
                        node
                    }
                };
                (node, Via::Peer)
            }
            CapDescriptor::ReceiverHosted(id) => {
                let node = *conn
                    .exports
                    .object(*id)
                    .ok_or(ProtocolError::NoSuchExport {
                        id: *id,
                        used_in: "receiverHosted descriptor",
                    })?;
                self.graph.add_ref(node);
                (node, Via::Loopback)
            }
            CapDescriptor::ReceiverAnswer(pa) => {
                let node = self.answer_pipeline(peer, pa, "receiverAnswer descriptor")?;
                (node, Via::Loopback)
            }
            CapDescriptor::ThirdPartyHosted { id, vine_id } => {
                let (id, vine_id) = (id.clone(), *vine_id);
                self.import_third_party(peer, &id, vine_id)?
            }
        })
    }

    /// The nodes (new references) a received cap table designates, with where each lives; on
    /// an error, the ones already taken are given back.
    pub(crate) fn import_cap_table(
        &mut self,
        peer: VatId,
        table: &[CapDescriptor],
    ) -> Result<Vec<(NodeId, Via)>, ProtocolError> {
        let mut taken = Vec::with_capacity(table.len());
        for desc in table {
            match self.import_cap(peer, desc) {
                Ok(t) => taken.push(t),
                Err(e) => {
                    for (node, _) in taken {
                        self.drop_node(node);
                    }
                    return Err(e);
                }
            }
        }
        Ok(taken)
    }

    /// Sends a call down a connection as a new question.
    pub(crate) fn send_call(&mut self, peer: VatId, target: MessageTarget, call: CallMsg) {
        if !self.conns.contains_key(&peer) {
            self.fail_delivery(
                super::graph::Delivery::Call(call),
                &disconnected("connection lost"),
            );
            return;
        }
        let mut cap_table = Vec::with_capacity(call.caps.len());
        let mut param_exports = Vec::new();
        for &c in &call.caps {
            let desc = self.export_cap(peer, c);
            if let CapDescriptor::SenderHosted(id) | CapDescriptor::SenderPromise(id) = desc {
                param_exports.push(id);
            }
            if let CapDescriptor::ThirdPartyHosted { vine_id, .. } = desc {
                param_exports.push(vine_id);
            }
            cap_table.push(desc);
        }
        // The message's references go only after it is queued: a `Release` that the drop
        // causes must not overtake a `receiverHosted` descriptor naming the same import.
        let held = call.caps;
        // A tail call on the connection its caller's question came from goes back with
        // `sendResultsTo.yourself`, answered by `takeFromOtherQuestion` — unless that question
        // was itself sent with `sendResultsTo.yourself`: its results must stay here, so the
        // tail call is an ordinary call (otherwise they would end up with neither vat).
        let outer = self.graph.results(call.results).and_then(|r| r.tail_of);
        let yourself_for: Option<AnswerId> = outer.and_then(|o| match self.graph.results(o) {
            Some(r) => match r.return_to {
                Some((p, a)) if p == peer => Some(a),
                _ => None,
            },
            None => None,
        });
        let yourself_for = yourself_for.filter(|a| {
            !matches!(
                self.conns
                    .get(&peer)
                    .and_then(|c| c.answer_recs.get(a))
                    .map(|r| &r.kind),
                Some(AnswerKind::Results { yourself: true, .. })
            )
        });
        let Some(conn) = self.conns.get_mut(&peer) else {
            self.drop_nodes(held);
            return;
        };
        let Ok(question_id) = conn.questions.ask() else {
            let e = failed("question IDs exhausted");
            self.settle(call.results, Err(e));
            self.drop_results(call.results);
            self.drop_nodes(held);
            return;
        };
        conn.question_recs.insert(
            question_id,
            QuestionRec {
                kind: QuestionKind::Call {
                    results: Some(call.results),
                    yourself: yourself_for.is_some(),
                },
                param_exports,
            },
        );
        self.graph.results_mut(call.results).question = Some((peer, question_id));
        self.send(
            peer,
            Message::Call(Call {
                question_id,
                target,
                interface_id: call.interface_id,
                method_id: call.method_id,
                allow_third_party_tail_call: false,
                no_promise_pipelining: false,
                only_promise_pipeline: false,
                params: Payload {
                    content: call.content,
                    cap_table,
                },
                send_results_to: if yourself_for.is_some() {
                    SendResultsTo::Yourself
                } else {
                    SendResultsTo::Caller
                },
            }),
        );
        if let (Some(answer), Some(outer)) = (yourself_for, outer) {
            // The caller takes the results from the question we just sent it.
            self.graph.results_mut(outer).return_to = None;
            self.send_return_result(
                peer,
                answer,
                ReturnResult::TakeFromOtherQuestion(question_id),
                Vec::new(),
            );
        }
        self.drop_nodes(held);
        self.pipeline_remotely(call.results);
        // The question only points at its results; the message's reference goes, so that the
        // question is finished as soon as nobody else wants the results.
        self.drop_results(call.results);
    }

    fn drop_nodes(&mut self, nodes: Vec<NodeId>) {
        for n in nodes {
            self.drop_node(n);
        }
    }

    pub(crate) fn send_bootstrap(&mut self, peer: VatId) -> ResultsId {
        let results = self.graph.new_results();
        let Some(conn) = self.conns.get_mut(&peer) else {
            self.settle(results, Err(disconnected("not connected")));
            return results;
        };
        let Ok(question_id) = conn.questions.ask() else {
            self.settle(results, Err(failed("question IDs exhausted")));
            return results;
        };
        conn.question_recs.insert(
            question_id,
            QuestionRec {
                kind: QuestionKind::Call {
                    results: Some(results),
                    yourself: false,
                },
                param_exports: Vec::new(),
            },
        );
        self.graph.results_mut(results).question = Some((peer, question_id));
        self.send(
            peer,
            Message::Bootstrap(Bootstrap {
                question_id,
                deprecated_object_id: AnyValue::Null,
            }),
        );
        results
    }

    /// Sends the `Return` for the peer's question `answer`.
    pub(crate) fn send_return(
        &mut self,
        peer: VatId,
        answer: AnswerId,
        outcome: &Result<(AnyValue, Vec<NodeId>), Exception>,
    ) {
        let Some(conn) = self.conns.get(&peer) else {
            return;
        };
        let Some(state) = conn.answers.get(answer).copied() else {
            return;
        };
        let yourself = matches!(
            conn.answer_recs.get(&answer).map(|r| &r.kind),
            Some(AnswerKind::Results { yourself: true, .. })
        );
        if state.returned {
            return;
        }
        if state.finish_received {
            self.send_return_result(peer, answer, ReturnResult::Canceled, Vec::new());
            return;
        }
        if yourself {
            self.send_return_result(peer, answer, ReturnResult::ResultsSentElsewhere, Vec::new());
            return;
        }
        match outcome {
            Ok((content, caps)) => {
                let mut cap_table = Vec::with_capacity(caps.len());
                let mut exports = Vec::new();
                let mut provides = BTreeMap::new();
                let mut pins = BTreeMap::new();
                for &c in caps {
                    if let Some(pin) = self.pin_for(peer, c) {
                        pins.insert(cap_table.len() as u32, pin);
                    }
                    let desc = self.export_cap(peer, c);
                    if let CapDescriptor::SenderHosted(id)
                    | CapDescriptor::SenderPromise(id)
                    | CapDescriptor::ThirdPartyHosted { vine_id: id, .. } = desc
                    {
                        exports.push(id);
                    }
                    if let CapDescriptor::ThirdPartyHosted { vine_id, .. } = desc
                        && let Some(&p) = self.conns.get(&peer).and_then(|c| c.vines.get(&vine_id))
                    {
                        provides.insert(cap_table.len() as u32, p);
                    }
                    cap_table.push(desc);
                }
                if let Some(rec) = self
                    .conns
                    .get_mut(&peer)
                    .and_then(|c| c.answer_recs.get_mut(&answer))
                {
                    rec.result_provides = provides;
                    pins = std::mem::replace(&mut rec.result_pins, pins);
                }
                for (_, pin) in pins {
                    self.drop_node(pin);
                }
                self.send_return_result(
                    peer,
                    answer,
                    ReturnResult::Results(Payload {
                        content: content.clone(),
                        cap_table,
                    }),
                    exports,
                );
            }
            Err(e) => self.send_return_result(
                peer,
                answer,
                ReturnResult::Exception(e.clone()),
                Vec::new(),
            ),
        }
    }

    pub(crate) fn send_return_result(
        &mut self,
        peer: VatId,
        answer: AnswerId,
        result: ReturnResult,
        result_exports: Vec<ExportId>,
    ) {
        let Some(conn) = self.conns.get_mut(&peer) else {
            return;
        };
        // An answer that is gone or already returned gets no second `Return` (a provision
        // accepted twice would otherwise return the introducer's `Provide` twice).
        let Ok(retired) = conn.answers.send_return(answer, false) else {
            return;
        };
        if let Some(rec) = conn.answer_recs.get_mut(&answer) {
            rec.result_exports = result_exports;
        }
        self.send(
            peer,
            Message::Return(Return {
                answer_id: answer,
                release_param_caps: false,
                no_finish_needed: false,
                result,
            }),
        );
        if retired {
            self.retire_answer(peer, answer);
        }
    }

    /// Forgets an answer whose `Return` went and whose `Finish` came.
    pub(crate) fn retire_answer(&mut self, peer: VatId, answer: AnswerId) {
        let Some(rec) = self
            .conns
            .get_mut(&peer)
            .and_then(|c| c.answer_recs.remove(&answer))
        else {
            return;
        };
        for node in rec
            .pipelines
            .into_values()
            .chain(rec.result_pins.into_values())
        {
            self.drop_node(node);
        }
        match rec.kind {
            AnswerKind::Results { results, .. } => self.drop_results(results),
            AnswerKind::Provide => self.drop_provision(peer, answer),
        }
    }

    pub(crate) fn send_resolve(&mut self, peer: VatId, export: ExportId, target: NodeId) {
        if !self.conns.contains_key(&peer) {
            return;
        }
        let resolution = match self.graph.kind(self.graph.latest(target)) {
            Some(NodeKind::Broken(e)) => Resolution::Exception(e.clone()),
            _ => Resolution::Cap(self.export_cap(peer, target)),
        };
        // Resolved to one of the peer's own promises: the peer's messages to this export go to
        // exactly that promise from now on, not to what it resolves to later.
        if let Some(pin) = self.pin_for(peer, target) {
            let old = self
                .conns
                .get_mut(&peer)
                .and_then(|c| c.exports.replace(export, pin));
            match old {
                Some(old) => self.drop_node(old),
                None => self.drop_node(pin),
            }
        }
        if let Resolution::Cap(CapDescriptor::ThirdPartyHosted { vine_id, .. }) = &resolution
            && let Some(conn) = self.conns.get_mut(&peer)
            && let Some(&p) = conn.vines.get(vine_id)
        {
            conn.resolved_to_provide.insert(export, p);
        }
        self.send(
            peer,
            Message::Resolve(Resolve {
                promise_id: export,
                resolution,
            }),
        );
    }

    /// Sends the `Finish` our question `q` owes, once nothing needs it any more.
    pub(crate) fn finish_question(&mut self, peer: VatId, q: crate::wire::QuestionId, early: bool) {
        let Some(conn) = self.conns.get_mut(&peer) else {
            return;
        };
        if !early {
            match conn.questions.get(q) {
                Some(state) if !state.finish_sent => {}
                _ => return,
            }
            let Ok(retired) = conn.questions.finish(q) else {
                return;
            };
            if retired {
                conn.question_recs.remove(&q);
            } else if let Some(QuestionRec {
                kind: QuestionKind::Call { results, .. },
                ..
            }) = conn.question_recs.get_mut(&q)
            {
                *results = None;
            }
        }
        // (With `early`, the planted bug already gave the ID back at the Return.)
        self.send(
            peer,
            Message::Finish(Finish {
                question_id: q,
                release_result_caps: false,
                require_early_cancellation_workaround: false,
            }),
        );
    }

    /// Queues a message to go right after the one being built.
    fn send_later(&mut self, peer: VatId, msg: Message) {
        self.later.push((peer, msg));
    }
}
