//! Messages from peers. A peer that breaks a rule gets an `Abort` and the connection closes;
//! everything the connection held is failed or given back, exactly as on a lost connection.

use super::conn::{AnswerKind, AnswerRec, QuestionKind};
use super::graph::{Delivery, NodeId, NodeKind, ReflectKind, ResultsState, Via};
use super::ids::ProvideRef;
use super::{RpcBug, Vat, VatEvent, VatId, disconnected, failed};
use crate::error::ProtocolError;
use crate::wire::{
    AnyValue, Call, Disembargo, DisembargoContext, Exception, ExceptionType, Finish, Message,
    MessageTarget, PromisedAnswer, Release, Resolution, Resolve, Return, ReturnResult,
    SendResultsTo,
};
use std::collections::BTreeMap;

impl Vat {
    /// Processes one message from `peer`. On a protocol error the connection is aborted (the
    /// `Abort` is in the outbox) and the error is returned. A message for a connection that is
    /// already closed is dropped with [`ProtocolError::Closed`].
    pub fn handle(&mut self, peer: VatId, msg: Message) -> Result<(), ProtocolError> {
        if !self.conns.contains_key(&peer) {
            return Err(ProtocolError::Closed);
        }
        self.routing_errors.clear();
        let mut result = self.dispatch(peer, msg);
        // A violation found while routing the message aborted the connection then and there;
        // it is this message's error too.
        if let Some((_, e)) = self.routing_errors.drain(..).find(|(p, _)| *p == peer) {
            result = Err(e);
        }
        if let Err(e) = &result {
            self.abort(peer, e.to_exception());
        }
        self.flush_resolutions();
        self.check();
        result
    }

    fn dispatch(&mut self, peer: VatId, msg: Message) -> Result<(), ProtocolError> {
        match msg {
            Message::Abort(reason) => {
                self.close(peer, reason, true);
                Ok(())
            }
            Message::Bootstrap(b) => self.on_bootstrap(peer, b.question_id),
            Message::Call(c) => self.on_call(peer, c),
            Message::Return(r) => self.on_return(peer, r),
            Message::Finish(f) => self.on_finish(peer, f),
            Message::Resolve(r) => self.on_resolve(peer, r),
            Message::Release(r) => self.on_release(peer, r),
            Message::Disembargo(d) => self.on_disembargo(peer, d),
            Message::Provide(p) => self.on_provide(peer, p),
            Message::Accept(a) => self.on_accept(peer, a),
            Message::Unimplemented(inner) => self.on_unimplemented(peer, *inner),
            other @ (Message::Join(_) | Message::ObsoleteSave(_) | Message::ObsoleteDelete(_)) => {
                self.send(peer, Message::Unimplemented(Box::new(other)));
                Ok(())
            }
        }
    }

    /// Aborts the connection to `peer` because of a protocol error found while routing.
    pub(crate) fn protocol_error(&mut self, peer: VatId, reason: &str) {
        if self.conns.contains_key(&peer) {
            let e = ProtocolError::PeerViolation {
                what: reason.into(),
            };
            self.abort(peer, e.to_exception());
            self.routing_errors.push((peer, e));
        }
    }

    fn abort(&mut self, peer: VatId, reason: Exception) {
        if self.conns.contains_key(&peer) {
            self.send(peer, Message::Abort(reason.clone()));
            self.close(peer, reason, false);
        }
    }

    fn new_answer(
        &mut self,
        peer: VatId,
        answer: crate::wire::AnswerId,
        yourself: bool,
    ) -> Result<super::graph::ResultsId, ProtocolError> {
        let conn = self.conns.get_mut(&peer).ok_or(ProtocolError::Closed)?;
        conn.answers.on_question(answer)?;
        let results = self.graph.new_results();
        if let Some(conn) = self.conns.get_mut(&peer) {
            conn.answer_recs.insert(
                answer,
                AnswerRec {
                    kind: AnswerKind::Results { results, yourself },
                    result_exports: Vec::new(),
                    pipelines: BTreeMap::new(),
                    result_provides: BTreeMap::new(),
                    result_pins: BTreeMap::new(),
                },
            );
        }
        self.graph.results_mut(results).return_to = Some((peer, answer));
        Ok(results)
    }

    fn on_bootstrap(&mut self, peer: VatId, answer: u32) -> Result<(), ProtocolError> {
        let results = self.new_answer(peer, answer, false)?;
        match self.bootstrap {
            Some(object) => {
                let node = self.graph.new_local(object);
                self.settle(results, Ok((AnyValue::Capability(0), vec![node])));
            }
            None => self.settle(
                results,
                Err(failed("this vat offers no bootstrap capability")),
            ),
        }
        Ok(())
    }

    /// The node a message target names (a new reference).
    pub(crate) fn target_node(
        &mut self,
        peer: VatId,
        target: &MessageTarget,
        used_in: &'static str,
    ) -> Result<NodeId, ProtocolError> {
        let conn = self.conns.get(&peer).ok_or(ProtocolError::Closed)?;
        match target {
            MessageTarget::ImportedCap(id) => {
                let node = *conn
                    .exports
                    .object(*id)
                    .ok_or(ProtocolError::NoSuchExport { id: *id, used_in })?;
                self.graph.add_ref(node);
                Ok(node)
            }
            MessageTarget::PromisedAnswer(pa) => self.answer_pipeline(peer, pa, used_in),
        }
    }

    /// The node a promised answer from the peer names: a path into the results of one of
    /// our answers (a new reference).
    ///
    /// One path of one answer names one node for as long as the answer lives (the answer
    /// entry holds it, as the C++ implementation's per-answer pipeline keeps one client per
    /// path): the peer's later calls on that path must follow its earlier ones, and those may
    /// have gone down a promise whose resolution raised an embargo. A node that only the
    /// in-flight call held would vanish with its `used` mark, and a later call would overtake.
    pub(crate) fn answer_pipeline(
        &mut self,
        peer: VatId,
        pa: &PromisedAnswer,
        used_in: &'static str,
    ) -> Result<NodeId, ProtocolError> {
        let conn = self.conns.get(&peer).ok_or(ProtocolError::Closed)?;
        let rec = conn.answer_recs.get(&pa.question_id);
        let results = match rec.map(|r| &r.kind) {
            Some(AnswerKind::Results { results, .. }) => *results,
            Some(AnswerKind::Provide) => {
                return Err(ProtocolError::NoSuchAnswer {
                    id: pa.question_id,
                    used_in: "a promised answer (a Provide has no results)",
                });
            }
            None => {
                return Err(ProtocolError::NoSuchAnswer {
                    id: pa.question_id,
                    used_in,
                });
            }
        };
        let path = super::graph::pipeline_path(pa);
        // A path to a capability we returned pinned goes to the pin.
        if let Some(rec) = rec
            && !rec.result_pins.is_empty()
            && let Some(Ok((content, _))) = self.graph.settled(results)
            && let Some(&pin) = content
                .cap_index_at(&path)
                .and_then(|i| rec.result_pins.get(&i))
        {
            self.graph.add_ref(pin);
            return Ok(pin);
        }
        if let Some(&node) = rec.and_then(|r| r.pipelines.get(&path))
            && self.graph.node(node).is_some()
        {
            self.graph.add_ref(node);
            return Ok(node);
        }
        let node = self.pipeline_node(results, &path);
        self.graph.add_ref(node);
        let held = self
            .conns
            .get_mut(&peer)
            .and_then(|c| c.answer_recs.get_mut(&pa.question_id))
            .and_then(|r| r.pipelines.insert(path, node));
        if let Some(old) = held {
            self.drop_node(old);
        }
        Ok(node)
    }

    fn on_call(&mut self, peer: VatId, call: Call) -> Result<(), ProtocolError> {
        let yourself = match &call.send_results_to {
            SendResultsTo::Caller => false,
            SendResultsTo::Yourself => true,
            SendResultsTo::ThirdParty(_) => {
                // Accept the question, then refuse it: the caller's tables stay balanced.
                let results = self.new_answer(peer, call.question_id, false)?;
                let e = Exception {
                    reason: "sendResultsTo.thirdParty is not implemented".into(),
                    kind: ExceptionType::Unimplemented,
                    trace: String::new(),
                };
                for (node, _) in self.import_cap_table(peer, &call.params.cap_table)? {
                    self.drop_node(node);
                }
                self.settle(results, Err(e));
                return Ok(());
            }
        };
        let results = self.new_answer(peer, call.question_id, yourself)?;
        // The call's own question does not exist until the call has been taken in: a call
        // that waited on its own results would never run, and would hold itself alive.
        let own = |pa: &PromisedAnswer| pa.question_id == call.question_id;
        if matches!(&call.target, MessageTarget::PromisedAnswer(pa) if own(pa))
            || call
                .params
                .cap_table
                .iter()
                .any(|d| matches!(d, crate::wire::CapDescriptor::ReceiverAnswer(pa) if own(pa)))
        {
            return Err(ProtocolError::NoSuchAnswer {
                id: call.question_id,
                used_in: "Call (its own question, not yet asked)",
            });
        }
        if let MessageTarget::ImportedCap(id) = call.target {
            self.vine_touched(peer, id);
        }
        let caps: Vec<NodeId> = self
            .import_cap_table(peer, &call.params.cap_table)?
            .into_iter()
            .map(|(node, _)| node)
            .collect();
        let target = match self.target_node(peer, &call.target, "Call.target") {
            Ok(t) => t,
            Err(e) => {
                for c in caps {
                    self.drop_node(c);
                }
                return Err(e);
            }
        };
        self.graph.add_results_ref(results);
        let msg = super::graph::CallMsg {
            interface_id: call.interface_id,
            method_id: call.method_id,
            content: call.params.content,
            caps,
            results,
            pin: None,
        };
        self.deliver(target, Delivery::Call(msg), true);
        self.drop_node(target);
        Ok(())
    }

    fn on_return(&mut self, peer: VatId, ret: Return) -> Result<(), ProtocolError> {
        let q = ret.answer_id;
        let bug_reuse = self.bug(RpcBug::QuestionReuseBeforeFinish);
        let conn = self.conns.get_mut(&peer).ok_or(ProtocolError::Closed)?;
        if ret.no_finish_needed
            && matches!(&ret.result, ReturnResult::Results(p) if !p.cap_table.is_empty())
        {
            return Err(ProtocolError::UnexpectedReturn {
                id: q,
                kind: "noFinishNeeded with capabilities in the results",
            });
        }
        let mut retired = conn.questions.on_return(q, ret.no_finish_needed)?;
        let Some(rec) = conn.question_recs.get_mut(&q) else {
            return Err(ProtocolError::ReturnForUnknownQuestion { id: q });
        };
        let param_exports = std::mem::take(&mut rec.param_exports);
        let finish_sent = conn.questions.get(q).is_none_or(|s| s.finish_sent);
        if bug_reuse && !retired && !finish_sent {
            // Planted bug: give the ID back now; the Finish still goes out later.
            if conn.questions.finish(q).unwrap_or(false) {
                retired = true;
            }
        }
        let kind = if retired {
            conn.question_recs.remove(&q).map(|r| r.kind)
        } else {
            conn.question_recs.get(&q).map(|r| r.kind)
        };
        if ret.release_param_caps {
            for id in param_exports {
                self.release_export(peer, id, 1)?;
            }
        }
        match kind {
            Some(QuestionKind::Call { results, yourself }) => {
                if let Some(r) = results {
                    if (ret.no_finish_needed || (retired && bug_reuse))
                        && self
                            .graph
                            .results(r)
                            .is_some_and(|rr| rr.question.is_some())
                    {
                        if ret.no_finish_needed {
                            self.graph.results_mut(r).question = None;
                        } else {
                            self.graph.results_mut(r).early_finish = true;
                        }
                    }
                    self.graph.add_results_ref(r);
                    let outcome = self.on_call_return(peer, r, yourself, ret.result);
                    self.drop_results(r);
                    outcome?;
                } else {
                    // We cancelled: give back whatever came.
                    if let ReturnResult::Results(p) = ret.result {
                        for (node, _) in self.import_cap_table(peer, &p.cap_table)? {
                            self.drop_node(node);
                        }
                    }
                }
            }
            Some(QuestionKind::Provide {
                node,
                recipient,
                vine,
                ..
            }) => {
                // The recipient has the capability: the provision can go.
                self.forget_vine(peer, q, recipient, vine);
                if !retired {
                    self.finish_plain(peer, q);
                }
                self.drop_node(node);
            }
            Some(QuestionKind::Accept { node }) => {
                self.on_accept_return(peer, q, node, ret.result)?;
            }
            None => {}
        }
        Ok(())
    }

    fn on_call_return(
        &mut self,
        peer: VatId,
        results: super::graph::ResultsId,
        yourself: bool,
        result: ReturnResult,
    ) -> Result<(), ProtocolError> {
        let q = self
            .graph
            .results(results)
            .and_then(|r| r.question)
            .map_or(0, |(_, q)| q);
        match result {
            ReturnResult::Results(payload) => {
                let (caps, vias): (Vec<NodeId>, Vec<Via>) = self
                    .import_cap_table(peer, &payload.cap_table)?
                    .into_iter()
                    .unzip();
                self.settle_via(results, Ok((payload.content, caps)), Via::Peer, &vias);
            }
            ReturnResult::Exception(e) => self.settle(results, Err(e)),
            ReturnResult::Canceled => self.settle(results, Err(failed("call was canceled"))),
            ReturnResult::ResultsSentElsewhere => {
                if !yourself {
                    return Err(ProtocolError::UnexpectedReturn {
                        id: q,
                        kind: "resultsSentElsewhere",
                    });
                }
                if let Some(r) = self.graph.results(results)
                    && matches!(r.state, ResultsState::Pending)
                {
                    self.graph.results_mut(results).state = ResultsState::Elsewhere;
                }
            }
            ReturnResult::TakeFromOtherQuestion(answer) => {
                let conn = self.conns.get(&peer).ok_or(ProtocolError::Closed)?;
                let other = match conn.answer_recs.get(&answer).map(|r| &r.kind) {
                    Some(AnswerKind::Results {
                        results,
                        yourself: true,
                    }) => *results,
                    _ => {
                        return Err(ProtocolError::UnexpectedReturn {
                            id: q,
                            kind: "takeFromOtherQuestion naming no sendResultsTo.yourself call",
                        });
                    }
                };
                self.redirect_via(results, other, Via::Loopback);
            }
            ReturnResult::AcceptFromThirdParty(_) => {
                return Err(ProtocolError::UnexpectedReturn {
                    id: q,
                    kind: "acceptFromThirdParty",
                });
            }
        }
        Ok(())
    }

    /// Sends `Finish` for a question that has no results record (a `Provide` or `Accept`).
    pub(crate) fn finish_plain(&mut self, peer: VatId, q: crate::wire::QuestionId) {
        let Some(conn) = self.conns.get_mut(&peer) else {
            return;
        };
        if let Ok(retired) = conn.questions.finish(q) {
            if retired {
                conn.question_recs.remove(&q);
            }
            self.send(
                peer,
                Message::Finish(Finish {
                    question_id: q,
                    release_result_caps: false,
                    require_early_cancellation_workaround: false,
                }),
            );
        }
    }

    fn on_finish(&mut self, peer: VatId, finish: Finish) -> Result<(), ProtocolError> {
        let a = finish.question_id;
        let conn = self.conns.get_mut(&peer).ok_or(ProtocolError::Closed)?;
        let returned = conn.answers.get(a).map(|s| s.returned);
        let retired = conn.answers.on_finish(a)?;
        let (exports, kind) = match conn.answer_recs.get_mut(&a) {
            Some(rec) => (
                std::mem::take(&mut rec.result_exports),
                match rec.kind {
                    AnswerKind::Results { results, .. } => Some(results),
                    AnswerKind::Provide => None,
                },
            ),
            None => (Vec::new(), None),
        };
        if finish.release_result_caps && returned == Some(true) {
            for id in exports {
                self.release_export(peer, id, 1)?;
            }
        }
        if returned == Some(false) {
            match kind {
                Some(results) => {
                    if let Some(call) = self.graph.results(results).and_then(|r| r.local_call) {
                        self.events.push(VatEvent::Cancelled { call });
                    }
                    // A call still queued here is cancelled outright (its `Return` says so).
                    self.cancel_queued(&[results].into(), &failed("call was canceled"));
                }
                None => {
                    // A Provide cancelled before anyone accepted it.
                    self.drop_provision(peer, a);
                    self.send_return_result(peer, a, ReturnResult::Canceled, Vec::new());
                    return Ok(());
                }
            }
        }
        if retired {
            self.retire_answer(peer, a);
        }
        Ok(())
    }

    fn on_resolve(&mut self, peer: VatId, resolve: Resolve) -> Result<(), ProtocolError> {
        let conn = self.conns.get(&peer).ok_or(ProtocolError::Closed)?;
        let node = conn
            .import_nodes
            .get(&resolve.promise_id)
            .copied()
            .filter(|n| self.graph.node(*n).is_some());
        let (target, via) = match &resolve.resolution {
            Resolution::Cap(desc) => self.import_cap(peer, desc)?,
            Resolution::Exception(e) => (
                self.graph.new_node(NodeKind::Broken(e.clone())),
                Via::Nothing,
            ),
        };
        let Some(node) = node else {
            // A late Resolve for a promise we already released: give back what it names.
            self.drop_node(target);
            return Ok(());
        };
        match self.graph.kind(node) {
            Some(NodeKind::RemotePromise {
                import: Some(_), ..
            }) => {
                self.resolve_node(node, target, via);
                Ok(())
            }
            Some(NodeKind::Forward { .. }) => {
                self.drop_node(target);
                Err(ProtocolError::PeerViolation {
                    what: format!("second Resolve for promise {}", resolve.promise_id),
                })
            }
            _ => {
                self.drop_node(target);
                Err(ProtocolError::PeerViolation {
                    what: format!(
                        "Resolve for import {}, which is not a promise",
                        resolve.promise_id
                    ),
                })
            }
        }
    }

    fn on_release(&mut self, peer: VatId, release: Release) -> Result<(), ProtocolError> {
        self.vine_touched(peer, release.id);
        self.release_export(peer, release.id, release.reference_count)
    }

    pub(crate) fn release_export(
        &mut self,
        peer: VatId,
        id: crate::wire::ExportId,
        count: u32,
    ) -> Result<(), ProtocolError> {
        let conn = self.conns.get_mut(&peer).ok_or(ProtocolError::Closed)?;
        if let Some(node) = conn.exports.release(id, count)? {
            conn.resolved_to_provide.remove(&id);
            if let Some(n) = self.graph.node_mut(node) {
                n.promised_to.remove(&(peer, id));
            }
            self.drop_node(node);
        }
        Ok(())
    }

    fn on_disembargo(&mut self, peer: VatId, d: Disembargo) -> Result<(), ProtocolError> {
        match d.context {
            DisembargoContext::SenderLoopback(id) => {
                let node = self.target_node(peer, &d.target, "Disembargo.target")?;
                let reflect = Delivery::Reflect {
                    from: peer,
                    epoch: self.conns.get(&peer).map_or(0, |c| c.epoch),
                    kind: ReflectKind::Loopback(id, d.target.clone()),
                    pin: None,
                };
                self.deliver(node, reflect, true);
                self.drop_node(node);
            }
            DisembargoContext::ReceiverLoopback(id) => {
                let conn = self.conns.get_mut(&peer).ok_or(ProtocolError::Closed)?;
                let node =
                    conn.embargoes
                        .remove(&id)
                        .ok_or_else(|| ProtocolError::PeerViolation {
                            what: format!("receiverLoopback for unknown embargo {id}"),
                        })?;
                self.lift_embargo(node);
            }
            DisembargoContext::Accept => {
                let node = self.target_node(peer, &d.target, "Disembargo.target")?;
                let provision = self.accept_provision_named(peer, &d.target);
                let reflect = Delivery::Reflect {
                    from: peer,
                    epoch: self.conns.get(&peer).map_or(0, |c| c.epoch),
                    kind: ReflectKind::Accept(provision),
                    pin: None,
                };
                self.deliver(node, reflect, true);
                self.drop_node(node);
            }
            DisembargoContext::Provide(q) => self.on_provide_disembargo(peer, q)?,
        }
        Ok(())
    }

    /// The `Provide` (host, question) that the promise an accept-disembargo names was
    /// resolved to, as we told the peer: by a `Resolve` (an export) or a `Return` (a path into
    /// an answer) carrying a `thirdPartyHosted` descriptor with that `Provide`'s vine.
    fn accept_provision_named(&self, peer: VatId, target: &MessageTarget) -> Option<ProvideRef> {
        let conn = self.conns.get(&peer)?;
        match target {
            MessageTarget::ImportedCap(export) => conn.resolved_to_provide.get(export).copied(),
            MessageTarget::PromisedAnswer(pa) => {
                let rec = conn.answer_recs.get(&pa.question_id)?;
                let AnswerKind::Results { results, .. } = rec.kind else {
                    return None;
                };
                let (content, _) = self.graph.settled(results)?.ok()?;
                let index = content.cap_index_at(&super::graph::pipeline_path(pa))?;
                rec.result_provides.get(&index).copied()
            }
        }
    }

    fn on_unimplemented(&mut self, peer: VatId, echoed: Message) -> Result<(), ProtocolError> {
        // The peer did not understand a message of ours. For a question, it never created an
        // answer: fail the question as if it had returned, with no Finish owed.
        let q = match &echoed {
            Message::Call(c) => c.question_id,
            Message::Bootstrap(b) => b.question_id,
            Message::Provide(p) => p.question_id,
            Message::Accept(a) => a.question_id,
            _ => return Ok(()),
        };
        let unimplemented = Exception {
            reason: format!("peer does not implement {}", echoed.kind()),
            kind: ExceptionType::Unimplemented,
            trace: String::new(),
        };
        let conn = self.conns.get(&peer).ok_or(ProtocolError::Closed)?;
        if conn.questions.get(q).is_none_or(|s| s.returned) {
            return Ok(());
        }
        self.on_return(
            peer,
            Return {
                answer_id: q,
                release_param_caps: true,
                no_finish_needed: true,
                result: ReturnResult::Exception(unimplemented),
            },
        )
    }

    /// Closes the connection to `peer`: its questions fail, its imports break, and what it
    /// held of ours is given back.
    pub(crate) fn close(&mut self, peer: VatId, reason: Exception, by_peer: bool) {
        let Some(conn) = self.conns.remove(&peer) else {
            return;
        };
        let lost = disconnected(&format!("connection to vat {peer} lost: {}", reason.reason));
        // The peer's calls still queued here have nobody to answer to any more.
        let abandoned: std::collections::BTreeSet<_> = conn
            .answer_recs
            .values()
            .filter_map(|r| match r.kind {
                AnswerKind::Results { results, .. } => Some(results),
                AnswerKind::Provide => None,
            })
            .collect();
        self.cancel_queued(&abandoned, &lost);
        // The recipient of our provisions is gone: it will not pick them up.
        for (&vine, p) in &conn.vines {
            self.close_provide(p.host, p.question, peer, vine);
        }
        for (q, rec) in conn.question_recs {
            match rec.kind {
                QuestionKind::Call {
                    results: Some(r), ..
                } => {
                    if self.graph.results(r).is_some() {
                        self.graph.results_mut(r).question = None;
                        self.graph.add_results_ref(r);
                        if matches!(
                            self.graph.results(r).map(|x| &x.state),
                            Some(ResultsState::Pending | ResultsState::Elsewhere)
                        ) {
                            self.settle(r, Err(lost.clone()));
                        }
                        self.drop_results(r);
                    }
                }
                QuestionKind::Call { results: None, .. } => {}
                QuestionKind::Provide {
                    node,
                    recipient,
                    vine,
                    ..
                } => {
                    self.forget_vine(peer, q, recipient, vine);
                    self.drop_node(node);
                }
                QuestionKind::Accept { node } => self.accept_failed(node),
            }
        }
        for (_, rec) in conn.answer_recs {
            for node in rec
                .pipelines
                .into_values()
                .chain(rec.result_pins.into_values())
            {
                self.drop_node(node);
            }
            match rec.kind {
                AnswerKind::Results { results, .. } => {
                    if self.graph.results(results).is_some() {
                        self.graph.results_mut(results).return_to = None;
                    }
                    self.drop_results(results);
                }
                AnswerKind::Provide => {}
            }
        }
        self.drop_provisions_from(peer);
        for (id, node, _) in conn
            .exports
            .iter()
            .map(|(i, n, c)| (i, *n, c))
            .collect::<Vec<_>>()
        {
            if let Some(n) = self.graph.node_mut(node) {
                n.promised_to.remove(&(peer, id));
            }
            self.drop_node(node);
        }
        for (_, node) in conn.import_nodes {
            self.break_import(node, &lost);
        }
        for (_, node) in conn.embargoes {
            self.lift_embargo(node);
        }
        self.events.push(VatEvent::Disconnected {
            peer,
            reason,
            by_peer,
        });
    }

    /// An import whose connection is gone: it breaks (or, if it was a resolved promise, just
    /// stops owing a `Release`).
    fn break_import(&mut self, node: NodeId, lost: &Exception) {
        match self.graph.kind_mut(node) {
            Some(NodeKind::Import { .. }) => {
                if let Some(k) = self.graph.kind_mut(node) {
                    *k = NodeKind::Broken(lost.clone());
                }
            }
            Some(NodeKind::RemotePromise { import, .. }) => {
                *import = None;
                let broken = self.graph.new_node(NodeKind::Broken(lost.clone()));
                self.resolve_node(node, broken, Via::Nothing);
            }
            Some(NodeKind::Forward { import, .. }) => *import = None,
            _ => {}
        }
    }
}
