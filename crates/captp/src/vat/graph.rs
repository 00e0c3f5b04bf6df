//! The capability graph: nodes (what a reference designates), results (what a question or a
//! local call will produce), reference counting, and the routing of calls along the graph.
//!
//! Every node and results record is counted: application handles, cap tables of results,
//! export-table entries, queued calls, forwarding links and embargoes each hold one reference.
//! When a count reaches zero the record goes, and with it what it holds (an import's
//! `Release`, a question's `Finish`).

use super::{CallId, ObjectId, RpcBug, Vat, VatEvent, VatId, failed};
use crate::wire::{
    AnswerId, AnyValue, Disembargo, DisembargoContext, EmbargoId, Exception, ExportId, ImportId,
    Message, MessageTarget, PromisedAnswer, QuestionId,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

pub(crate) type NodeId = u64;
pub(crate) type ResultsId = u64;

/// Where a promise's resolution lives, as the message that resolved it says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Via {
    /// In this vat (`receiverHosted`, `receiverAnswer`, or results taken from one of our own
    /// answers): calls already sent down the old path will come back, so new ones must wait.
    Loopback,
    /// At the peer that resolved it (`senderHosted`, `senderPromise`).
    Peer,
    /// At a third vat (`thirdPartyHosted`).
    ThirdParty,
    /// Nowhere: an exception or a null capability.
    Nothing,
}

#[derive(Debug)]
pub(crate) struct CallMsg {
    pub interface_id: u64,
    pub method_id: u16,
    pub content: AnyValue,
    /// Owned references.
    pub caps: Vec<NodeId>,
    /// Owned reference to where the results go.
    pub results: ResultsId,
}

/// A message travelling the graph: a call, or a disembargo being reflected.
#[derive(Debug)]
pub(crate) enum Delivery {
    Call(CallMsg),
    /// A `Disembargo` from `from` on its way to the end of its target's route.
    Reflect {
        from: VatId,
        kind: ReflectKind,
    },
}

#[derive(Clone, Debug)]
pub(crate) enum ReflectKind {
    /// `senderLoopback(id)` on `target` (as the sender named it): reflect as
    /// `receiverLoopback(id)`.
    Loopback(EmbargoId, MessageTarget),
    /// `accept`: pass on to the provider as `provide`; with the `Provide` (host, question)
    /// that the named promise's resolution stood for, where we know it.
    Accept(Option<(VatId, crate::wire::QuestionId)>),
}

#[derive(Debug, Default)]
pub(crate) struct Embargo {
    pub queue: VecDeque<Delivery>,
    /// The question the disembargo targets, kept alive until the embargo lifts.
    pub hold: Option<ResultsId>,
}

#[derive(Debug)]
pub(crate) enum NodeKind {
    Null,
    Broken(Exception),
    Local(ObjectId),
    /// A settled capability the peer exported to us.
    Import {
        peer: VatId,
        id: ImportId,
    },
    /// An unresolved remote promise: an imported `senderPromise` (`import` is set), or a
    /// capability in the results of one of our questions (`results` is held).
    RemotePromise {
        peer: VatId,
        target: MessageTarget,
        import: Option<ImportId>,
        results: Option<ResultsId>,
        /// Calls were sent through it.
        used: bool,
    },
    /// A capability in results being computed in this vat: calls wait here.
    LocalPromise {
        results: ResultsId,
        queue: VecDeque<Delivery>,
    },
    /// A capability being accepted from a third vat: calls wait here until the `Accept`
    /// returns.
    ThirdParty(super::handoff::Accepting),
    /// A resolved promise: calls go on to `to`, after whatever waits in the embargo.
    Forward {
        to: NodeId,
        embargo: Option<Embargo>,
        /// The import this was (released when this node goes).
        import: Option<(VatId, ImportId)>,
        /// The peer whose promise this was (it resolved it, by `Resolve` or `Return`).
        resolved_by: Option<VatId>,
    },
}

#[derive(Debug)]
pub(crate) struct Node {
    pub kind: NodeKind,
    refs: u32,
    /// Where this node is exported as a `senderPromise`: each gets a `Resolve`.
    pub promised_to: BTreeSet<(VatId, ExportId)>,
}

#[derive(Debug)]
pub(crate) enum ResultsState {
    Pending,
    /// Will be the results of another record (a returned promise or a tail call).
    Following(ResultsId),
    Done {
        content: AnyValue,
        caps: Vec<NodeId>,
    },
    Failed(Exception),
    /// The callee kept them (`sendResultsTo.yourself`); only pipelining reaches them.
    Elsewhere,
}

#[derive(Debug)]
pub(crate) struct Results {
    refs: u32,
    pub state: ResultsState,
    /// Promise nodes pipelined on these results while pending, by path (weak).
    pub pipelines: BTreeMap<Vec<u16>, NodeId>,
    /// The same, once the results settled and those promises resolved (weak; node IDs are
    /// never reused). A later pipelined call must go through them, not straight to the
    /// capability: earlier calls went that way, and an embargo there may hold them.
    pub resolved_pipelines: BTreeMap<Vec<u16>, NodeId>,
    /// The nodes of `resolved_pipelines` that belong to other results (pipelines taken through
    /// what these results follow), held while these results live: calls the peer pipelined
    /// on them went that way, and without the node, the promise's `used` mark and embargo
    /// would be gone by the time the followed results settle.
    pub held_pipelines: Vec<NodeId>,
    /// The peer's question these results answer.
    pub return_to: Option<(VatId, AnswerId)>,
    /// Our question that produces them.
    pub question: Option<(VatId, QuestionId)>,
    /// Records following these results (they hold a reference to us).
    pub followers: Vec<ResultsId>,
    /// These are the results of a tail call made to answer that record.
    pub tail_of: Option<ResultsId>,
    /// The local call producing them, while the application has not answered.
    pub local_call: Option<CallId>,
    /// Planted bug: the question's ID went back to the table at the `Return`.
    pub early_finish: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Graph {
    nodes: BTreeMap<NodeId, Node>,
    next_node: NodeId,
    results: BTreeMap<ResultsId, Results>,
    next_results: ResultsId,
}

impl Graph {
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn results_count(&self) -> usize {
        self.results.len()
    }

    pub fn new_node(&mut self, kind: NodeKind) -> NodeId {
        let id = self.next_node;
        self.next_node += 1;
        self.nodes.insert(
            id,
            Node {
                kind,
                refs: 1,
                promised_to: BTreeSet::new(),
            },
        );
        id
    }

    pub fn new_local(&mut self, object: ObjectId) -> NodeId {
        self.new_node(NodeKind::Local(object))
    }

    pub fn new_results(&mut self) -> ResultsId {
        let id = self.next_results;
        self.next_results += 1;
        self.results.insert(
            id,
            Results {
                refs: 1,
                state: ResultsState::Pending,
                pipelines: BTreeMap::new(),
                resolved_pipelines: BTreeMap::new(),
                held_pipelines: Vec::new(),
                return_to: None,
                question: None,
                followers: Vec::new(),
                tail_of: None,
                local_call: None,
                early_finish: false,
            },
        );
        id
    }

    pub fn add_ref(&mut self, node: NodeId) {
        if let Some(n) = self.nodes.get_mut(&node) {
            n.refs += 1;
        }
    }

    pub fn add_results_ref(&mut self, results: ResultsId) {
        if let Some(r) = self.results.get_mut(&results) {
            r.refs += 1;
        }
    }

    pub fn node(&self, node: NodeId) -> Option<&Node> {
        self.nodes.get(&node)
    }

    pub fn node_mut(&mut self, node: NodeId) -> Option<&mut Node> {
        self.nodes.get_mut(&node)
    }

    pub fn kind(&self, node: NodeId) -> Option<&NodeKind> {
        self.nodes.get(&node).map(|n| &n.kind)
    }

    pub fn results(&self, results: ResultsId) -> Option<&Results> {
        self.results.get(&results)
    }

    /// The record must exist (the caller holds a reference).
    pub fn results_mut(&mut self, results: ResultsId) -> &mut Results {
        self.results
            .get_mut(&results)
            .expect("a results record is alive while referenced")
    }

    /// Follows resolved promises to the end, ignoring embargoes.
    /// (Resolution never closes a cycle, see [`Vat::resolve_node`]; the bound is a backstop.)
    pub fn latest(&self, mut node: NodeId) -> NodeId {
        for _ in 0..=self.nodes.len() {
            match self.kind(node) {
                Some(NodeKind::Forward { to, .. }) => node = *to,
                _ => break,
            }
        }
        node
    }

    /// The end of a record's `Following` chain.
    pub fn followed(&self, mut results: ResultsId) -> ResultsId {
        for _ in 0..=self.results.len() {
            match self.results.get(&results) {
                Some(Results {
                    state: ResultsState::Following(next),
                    ..
                }) => results = *next,
                _ => break,
            }
        }
        results
    }

    /// The outcome of a record, if known (with the caps not yet counted for the caller).
    pub fn settled(
        &self,
        results: ResultsId,
    ) -> Option<Result<(AnyValue, Vec<NodeId>), Exception>> {
        match &self.results.get(&self.followed(results))?.state {
            ResultsState::Done { content, caps } => Some(Ok((content.clone(), caps.clone()))),
            ResultsState::Failed(e) => Some(Err(e.clone())),
            ResultsState::Pending | ResultsState::Following(_) | ResultsState::Elsewhere => None,
        }
    }

    /// Takes one reference away from a node; returns it if that was the last.
    fn unref_node(&mut self, node: NodeId) -> Option<Node> {
        let n = self.nodes.get_mut(&node)?;
        n.refs = n.refs.saturating_sub(1);
        if n.refs > 0 {
            return None;
        }
        self.nodes.remove(&node)
    }

    fn unref_results(&mut self, results: ResultsId) -> Option<Results> {
        let r = self.results.get_mut(&results)?;
        r.refs = r.refs.saturating_sub(1);
        if r.refs > 0 {
            return None;
        }
        self.results.remove(&results)
    }
}

impl Vat {
    pub(crate) fn new_call_msg(
        &mut self,
        interface_id: u64,
        method_id: u16,
        content: AnyValue,
        caps: &[&super::CapRef],
        results: ResultsId,
    ) -> CallMsg {
        let caps = caps
            .iter()
            .map(|c| {
                self.graph.add_ref(c.0);
                c.0
            })
            .collect();
        // The message holds its own reference to the results.
        self.graph.add_results_ref(results);
        CallMsg {
            interface_id,
            method_id,
            content,
            caps,
            results,
        }
    }

    /// Drops one reference to a node, and whatever the node held if it was the last.
    pub(crate) fn drop_node(&mut self, node: NodeId) {
        let mut pending = vec![node];
        while let Some(node) = pending.pop() {
            let Some(gone) = self.graph.unref_node(node) else {
                continue;
            };
            match gone.kind {
                NodeKind::Import { peer, id } => self.release_import(peer, id),
                NodeKind::RemotePromise {
                    peer,
                    import,
                    results,
                    target,
                    ..
                } => {
                    if let Some(id) = import {
                        self.release_import(peer, id);
                    }
                    if let Some(r) = results {
                        self.forget_pipeline(r, &target);
                        self.drop_results(r);
                    }
                }
                NodeKind::LocalPromise { results, queue } => {
                    // Queued calls were made: they are failed, never dropped silently.
                    self.forget_local_pipeline(results, node);
                    self.drop_results(results);
                    for d in queue {
                        self.fail_delivery(d, &failed("promise dropped with calls queued"));
                    }
                }
                NodeKind::ThirdParty(acc) => {
                    pending.push(acc.vine);
                    for d in acc.queue {
                        self.fail_delivery(d, &failed("handoff dropped with calls queued"));
                    }
                }
                NodeKind::Forward {
                    to,
                    embargo,
                    import,
                    ..
                } => {
                    if let Some((peer, id)) = import {
                        self.release_import(peer, id);
                    }
                    if let Some(e) = embargo {
                        for d in e.queue {
                            self.deliver(to, d, false);
                        }
                        if let Some(r) = e.hold {
                            self.drop_results(r);
                        }
                    }
                    pending.push(to);
                }
                NodeKind::Null | NodeKind::Broken(_) | NodeKind::Local(_) => {}
            }
        }
    }

    fn forget_pipeline(&mut self, results: ResultsId, target: &MessageTarget) {
        if let MessageTarget::PromisedAnswer(pa) = target
            && let Some(r) = self.graph.results.get_mut(&results)
        {
            let path = pipeline_path(pa);
            r.pipelines.remove(&path);
        }
    }

    /// A call that waited here while its results were local has just gone to a peer: the
    /// promises already pipelined on those results go there too, as promised answers, with
    /// the calls they queued. Left local, they would wait for a `Return` that, for a question
    /// sent with `sendResultsTo.yourself`, never brings the results here.
    pub(crate) fn pipeline_remotely(&mut self, results: ResultsId) {
        let Some(r) = self.graph.results.get(&results) else {
            return;
        };
        let local: Vec<(Vec<u16>, NodeId)> = r
            .pipelines
            .iter()
            .filter(|(_, n)| matches!(self.graph.kind(**n), Some(NodeKind::LocalPromise { .. })))
            .map(|(path, n)| (path.clone(), *n))
            .collect();
        for (path, pnode) in local {
            self.graph.results_mut(results).pipelines.remove(&path);
            let remote = self.pipeline_node_of(results, &path);
            self.resolve_node(pnode, remote, Via::Nothing);
        }
    }

    fn forget_local_pipeline(&mut self, results: ResultsId, node: NodeId) {
        if let Some(r) = self.graph.results.get_mut(&results) {
            r.pipelines.retain(|_, n| *n != node);
        }
    }

    /// Sends the `Release` for an import we no longer reference.
    fn release_import(&mut self, peer: VatId, id: ImportId) {
        let bug = self.bug(RpcBug::ReleaseOffByOne);
        let Some(conn) = self.conns.get_mut(&peer) else {
            return;
        };
        conn.import_nodes.remove(&id);
        if let Ok(mut release) = conn.imports.drop_import(id) {
            if bug {
                release.reference_count -= 1;
            }
            self.send(peer, Message::Release(release));
        }
    }

    /// Drops one reference to a results record; when it was the last, gives back what it held
    /// and sends the `Finish` our question owes.
    pub(crate) fn drop_results(&mut self, results: ResultsId) {
        let Some(gone) = self.graph.unref_results(results) else {
            return;
        };
        if let Some((peer, q)) = gone.question {
            self.finish_question(peer, q, gone.early_finish);
        }
        for node in gone.held_pipelines {
            self.drop_node(node);
        }
        match gone.state {
            ResultsState::Done { caps, .. } => {
                for c in caps {
                    self.drop_node(c);
                }
            }
            ResultsState::Following(next) => self.drop_results(next),
            ResultsState::Pending | ResultsState::Failed(_) | ResultsState::Elsewhere => {}
        }
    }

    /// A node for the capability at `path` in `results` (a new reference).
    pub(crate) fn pipeline_node(&mut self, asked: ResultsId, path: &[u16]) -> NodeId {
        let results = self.graph.followed(asked);
        let node = self.pipeline_node_of(results, path);
        if results != asked {
            // Once `asked` settles (with a copy of what it follows), calls pipelined on it
            // must still go through the node this call took (see `resolved_pipelines`).
            self.hold_pipeline(asked, path.to_vec(), node);
        }
        node
    }

    /// Records `node` as the promise pipelined on `results` at `path`, held while `results`
    /// lives (see `held_pipelines`); a node already recorded there is not held twice.
    fn hold_pipeline(&mut self, results: ResultsId, path: Vec<u16>, node: NodeId) {
        let r = self.graph.results_mut(results);
        if r.resolved_pipelines.insert(path, node) != Some(node) {
            r.held_pipelines.push(node);
            self.graph.add_ref(node);
        }
    }

    fn pipeline_node_of(&mut self, results: ResultsId, path: &[u16]) -> NodeId {
        let Some(r) = self.graph.results.get(&results) else {
            return self
                .graph
                .new_node(NodeKind::Broken(failed("pipelined on released results")));
        };
        match &r.state {
            ResultsState::Done { content, caps } => {
                if let Some(&node) = r.resolved_pipelines.get(path)
                    && self.graph.node(node).is_some()
                {
                    self.graph.add_ref(node);
                    return node;
                }
                match content
                    .cap_index_at(path)
                    .and_then(|i| caps.get(i as usize))
                {
                    Some(&node) => {
                        self.graph.add_ref(node);
                        node
                    }
                    None => self.graph.new_node(NodeKind::Null),
                }
            }
            ResultsState::Failed(e) => {
                let e = e.clone();
                self.graph.new_node(NodeKind::Broken(e))
            }
            ResultsState::Pending | ResultsState::Elsewhere | ResultsState::Following(_) => {
                if let Some(&node) = r.pipelines.get(path) {
                    self.graph.add_ref(node);
                    return node;
                }
                let kind = match r.question {
                    Some((peer, question_id)) => NodeKind::RemotePromise {
                        peer,
                        target: MessageTarget::PromisedAnswer(PromisedAnswer {
                            question_id,
                            transform: path
                                .iter()
                                .map(|&i| crate::wire::PipelineOp::GetPointerField(i))
                                .collect(),
                        }),
                        import: None,
                        results: Some(results),
                        used: false,
                    },
                    None => NodeKind::LocalPromise {
                        results,
                        queue: VecDeque::new(),
                    },
                };
                self.graph.add_results_ref(results);
                let node = self.graph.new_node(kind);
                self.graph
                    .results_mut(results)
                    .pipelines
                    .insert(path.to_vec(), node);
                node
            }
        }
    }

    /// Routes a delivery along the graph from `node`, hop by hop. `forwarded` marks deliveries
    /// that arrived from a peer (the ones the `ForwardToLatest` bug shortcuts).
    pub(crate) fn deliver(&mut self, node: NodeId, d: Delivery, forwarded: bool) {
        let mut at = node;
        if forwarded && self.bug(RpcBug::ForwardToLatest) {
            at = self.graph.latest(at);
        }
        loop {
            // A call waiting on a promise for its own results would wait forever, and, as
            // its queue holds the promise, never go away.
            if let (Some(NodeKind::LocalPromise { results, .. }), Delivery::Call(call)) =
                (self.graph.kind(at), &d)
                && self.graph.followed(*results) == self.graph.followed(call.results)
            {
                self.fail_delivery(d, &failed("a call waits on a promise for its own results"));
                return;
            }
            let Some(n) = self.graph.nodes.get_mut(&at) else {
                self.fail_delivery(d, &failed("call on a released capability"));
                return;
            };
            match &mut n.kind {
                NodeKind::Forward {
                    embargo: Some(e), ..
                } => {
                    e.queue.push_back(d);
                    return;
                }
                NodeKind::Forward {
                    resolved_by: Some(p),
                    ..
                } if matches!(&d, Delivery::Reflect { from, kind: ReflectKind::Loopback(..) } if from == p) =>
                {
                    // The route runs through a promise the sender itself hosted (an export or
                    // an answer) and has since resolved: the sender named this route when it
                    // still led back to it, and what it sent before has gone on from here.
                    self.reflect(d);
                    return;
                }
                NodeKind::Forward { to, .. } => at = *to,
                NodeKind::LocalPromise { queue, .. } => {
                    // A queued call keeps the promise alive: an answer holds its pipelined
                    // promises only weakly, and a call the peer pipelined on it must wait for
                    // the answer, not fail because nobody here references the promise.
                    queue.push_back(d);
                    self.graph.add_ref(at);
                    return;
                }
                NodeKind::ThirdParty(acc) => {
                    acc.queue.push_back(d);
                    return;
                }
                NodeKind::Null => {
                    self.fail_delivery(d, &failed("call on a null capability"));
                    return;
                }
                NodeKind::Broken(e) => {
                    let e = e.clone();
                    self.fail_delivery(d, &e);
                    return;
                }
                NodeKind::Local(object) => {
                    let object = *object;
                    match d {
                        Delivery::Call(call) => self.deliver_local(object, call),
                        Delivery::Reflect { from, .. } => self.protocol_error(
                            from,
                            "Disembargo target does not point back to the sender",
                        ),
                    }
                    return;
                }
                NodeKind::Import { peer, id } => {
                    let (peer, target) = (*peer, MessageTarget::ImportedCap(*id));
                    self.deliver_remote(at, peer, target, d);
                    return;
                }
                NodeKind::RemotePromise {
                    peer, target, used, ..
                } => {
                    if matches!(d, Delivery::Call(_)) {
                        *used = true;
                    }
                    let (peer, target) = (*peer, target.clone());
                    self.deliver_remote(at, peer, target, d);
                    return;
                }
            }
        }
    }

    fn deliver_remote(&mut self, node: NodeId, peer: VatId, target: MessageTarget, d: Delivery) {
        match d {
            Delivery::Call(call) => self.send_call(peer, target, call),
            Delivery::Reflect {
                from,
                kind: ReflectKind::Loopback(id, _),
            } => {
                if from == peer {
                    self.send(
                        peer,
                        Message::Disembargo(Disembargo {
                            target,
                            context: DisembargoContext::ReceiverLoopback(id),
                        }),
                    );
                } else {
                    self.protocol_error(
                        from,
                        "Disembargo target does not point back to the sender",
                    );
                }
            }
            Delivery::Reflect {
                from,
                kind: ReflectKind::Accept(provision),
            } => self.forward_accept_disembargo(from, node, peer, target, provision),
        }
    }

    /// Reflects a loopback disembargo to its sender where it stands, naming the target the
    /// sender named (the route no longer ends at the sender's connection; see the callers).
    fn reflect(&mut self, d: Delivery) {
        if let Delivery::Reflect {
            from,
            kind: ReflectKind::Loopback(id, named),
        } = d
            // The sender's connection may have closed while its disembargo waited.
            && self.conns.contains_key(&from)
        {
            self.send(
                from,
                Message::Disembargo(Disembargo {
                    target: named,
                    context: DisembargoContext::ReceiverLoopback(id),
                }),
            );
        }
    }

    fn deliver_local(&mut self, object: ObjectId, call: CallMsg) {
        let id = self.next_call;
        self.next_call += 1;
        self.graph.results_mut(call.results).local_call = Some(id);
        self.calls.insert(id, call.results);
        self.events.push(VatEvent::Call {
            call: id,
            object,
            interface_id: call.interface_id,
            method_id: call.method_id,
            content: call.content,
            caps: call.caps.into_iter().map(super::CapRef).collect(),
        });
    }

    pub(crate) fn fail_delivery(&mut self, d: Delivery, e: &Exception) {
        match d {
            Delivery::Call(call) => {
                for c in call.caps {
                    self.drop_node(c);
                }
                self.settle(call.results, Err(e.clone()));
                self.drop_results(call.results);
            }
            // The route broke because a connection further on was lost: a race with the
            // disconnect, not the sender's fault. A loopback is reflected (so that its
            // embargo lifts; what waits behind it fails on the broken capability anyway); an
            // accept has nothing left to pass on, as the handoff has failed too.
            d @ Delivery::Reflect {
                kind: ReflectKind::Loopback(..),
                ..
            } if e.kind == crate::wire::ExceptionType::Disconnected => self.reflect(d),
            Delivery::Reflect {
                kind: ReflectKind::Accept(_),
                ..
            } if e.kind == crate::wire::ExceptionType::Disconnected => {}
            Delivery::Reflect { from, .. } => {
                self.protocol_error(from, "Disembargo target does not point back to the sender")
            }
        }
    }

    /// Records the outcome of `results`, resolves what was pipelined on it, sends the `Return`
    /// it owes, and passes it on to the records following it.
    pub(crate) fn settle(
        &mut self,
        results: ResultsId,
        outcome: Result<(AnyValue, Vec<NodeId>), Exception>,
    ) {
        self.settle_via(results, outcome, Via::Loopback, &[]);
    }

    /// As [`Vat::settle`], with `via` saying where the caps live (per cap, `vias[i]` overrides
    /// `via` when present).
    pub(crate) fn settle_via(
        &mut self,
        results: ResultsId,
        outcome: Result<(AnyValue, Vec<NodeId>), Exception>,
        via: Via,
        vias: &[Via],
    ) {
        let Some(r) = self.graph.results.get_mut(&results) else {
            // Nobody wants them any more: give the caps back.
            if let Ok((_, caps)) = outcome {
                for c in caps {
                    self.drop_node(c);
                }
            }
            return;
        };
        let previous = std::mem::replace(
            &mut r.state,
            match &outcome {
                Ok((content, caps)) => ResultsState::Done {
                    content: content.clone(),
                    caps: caps.clone(),
                },
                Err(e) => ResultsState::Failed(e.clone()),
            },
        );
        r.local_call = None;
        let pipelines = std::mem::take(&mut r.pipelines);
        let followers = std::mem::take(&mut r.followers);
        let return_to = r.return_to.take();
        if let ResultsState::Following(inner) = previous {
            self.drop_results(inner);
        }
        if let Some(r) = self.graph.results.get_mut(&results) {
            r.resolved_pipelines.extend(pipelines.clone());
        }
        for (path, pnode) in pipelines {
            let (target, v) = match &outcome {
                Ok((content, caps)) => match content.cap_index_at(&path) {
                    Some(i) if (i as usize) < caps.len() => {
                        let node = caps[i as usize];
                        self.graph.add_ref(node);
                        (node, vias.get(i as usize).copied().unwrap_or(via))
                    }
                    _ => (self.graph.new_node(NodeKind::Null), Via::Nothing),
                },
                Err(e) => (
                    self.graph.new_node(NodeKind::Broken(e.clone())),
                    Via::Nothing,
                ),
            };
            self.resolve_node(pnode, target, v);
        }
        if let Some((peer, answer)) = return_to {
            self.send_return(peer, answer, &outcome);
        }
        for f in followers {
            let copy = match &outcome {
                Ok((content, caps)) => {
                    for &c in caps {
                        self.graph.add_ref(c);
                    }
                    Ok((content.clone(), caps.clone()))
                }
                Err(e) => Err(e.clone()),
            };
            self.settle_via(f, copy, via, vias);
        }
    }

    /// Makes `results` follow `inner`: its pipelines move over, and it settles when `inner`
    /// does.
    pub(crate) fn redirect(&mut self, results: ResultsId, inner: ResultsId) {
        self.redirect_via(results, inner, Via::Loopback);
    }

    pub(crate) fn redirect_via(&mut self, results: ResultsId, inner: ResultsId, via: Via) {
        if self.graph.followed(inner) == results {
            // An answer that is a promise for itself never resolves: break the cycle.
            self.settle(results, Err(failed("a promise resolved to itself")));
            return;
        }
        if let Some(settled) = self.graph.settled(inner) {
            let copy = settled.map(|(content, caps)| {
                for &c in &caps {
                    self.graph.add_ref(c);
                }
                (content, caps)
            });
            self.settle_via(results, copy, via, &[]);
            return;
        }
        self.graph.add_results_ref(inner);
        let r = self.graph.results_mut(results);
        r.state = ResultsState::Following(inner);
        let pipelines = std::mem::take(&mut r.pipelines);
        let end = self.graph.followed(inner);
        self.graph.results_mut(end).followers.push(results);
        for (path, pnode) in pipelines {
            let target = self.pipeline_node(inner, &path);
            self.hold_pipeline(results, path, target);
            self.resolve_node(pnode, target, via);
        }
    }

    /// Resolves a promise node to `target` (whose reference it takes over), embargoing it if
    /// calls already sent down its old path could be overtaken, and tells every peer it was
    /// exported to.
    pub(crate) fn resolve_node(&mut self, node: NodeId, target: NodeId, via: Via) {
        let latest = self.graph.latest(target);
        let (target, via) = if latest == node {
            // Resolving a promise to itself would make calls circle forever: break it.
            self.drop_node(target);
            let broken = NodeKind::Broken(failed("a promise resolved to itself"));
            (self.graph.new_node(broken), Via::Nothing)
        } else if matches!(
            self.graph.kind(latest),
            Some(NodeKind::Broken(_) | NodeKind::Null)
        ) {
            // A loopback descriptor naming an answer of ours that already failed: there is
            // nothing for calls to reach, so nothing to embargo (and the peer, whose copy of
            // that capability has failed too, would refuse a `Disembargo`).
            (target, Via::Nothing)
        } else {
            (target, via)
        };
        let Some(n) = self.graph.nodes.get_mut(&node) else {
            self.drop_node(target);
            return;
        };
        let mut queued = 0;
        let old = std::mem::replace(
            &mut n.kind,
            NodeKind::Forward {
                to: target,
                embargo: None,
                import: None,
                resolved_by: None,
            },
        );
        match old {
            NodeKind::RemotePromise {
                peer,
                target: old_target,
                import,
                results,
                used,
            } => {
                let loopback = via == Via::Loopback && !self.bug(RpcBug::SkipLoopbackEmbargo);
                let bogus = self.bug(RpcBug::DisembargoNonLoopback) && via != Via::Loopback;
                let embargo = used && (loopback || bogus);
                if let Some(r) = results {
                    self.forget_pipeline(r, &old_target);
                }
                let mut hold = results;
                if embargo && let Some(conn) = self.conns.get_mut(&peer) {
                    let id = conn.new_embargo(node);
                    self.graph.add_ref(node);
                    self.send(
                        peer,
                        Message::Disembargo(Disembargo {
                            target: old_target.clone(),
                            context: DisembargoContext::SenderLoopback(id),
                        }),
                    );
                    if let Some(NodeKind::Forward { embargo, .. }) = self.graph.kind_mut(node) {
                        *embargo = Some(Embargo {
                            queue: VecDeque::new(),
                            hold: hold.take(),
                        });
                    }
                } else if used && via == Via::Peer && !self.bug(RpcBug::NoRecursiveEmbargo) {
                    // Calls sent down the old path go on to this promise's own target: if it
                    // later resolves back here, they must not be overtaken either.
                    if let Some(NodeKind::RemotePromise { used, peer: p2, .. }) =
                        self.graph.kind_mut(self.graph.latest(target))
                        && *p2 == peer
                    {
                        *used = true;
                    }
                } else if used && via == Via::ThirdParty {
                    self.embargo_handoff(peer, old_target, target);
                }
                if let Some(NodeKind::Forward {
                    import: imp,
                    resolved_by,
                    ..
                }) = self.graph.kind_mut(node)
                {
                    *imp = import.map(|id| (peer, id));
                    *resolved_by = Some(peer);
                }
                if let Some(r) = hold {
                    self.drop_results(r);
                }
            }
            NodeKind::LocalPromise { results, queue } => {
                self.forget_local_pipeline(results, node);
                self.drop_results(results);
                queued = queue.len();
                for d in queue {
                    self.deliver(target, d, false);
                }
            }
            NodeKind::ThirdParty(acc) => {
                // Settled by the handoff code, which lifts the queue itself.
                if let Some(NodeKind::Forward { .. }) = self.graph.kind(node) {
                    for d in acc.queue {
                        match d {
                            // A loopback disembargo that waited here: the capability moved to
                            // a third vat while the sender's calls were on their way, so the
                            // route no longer leads back to the sender. Everything before it
                            // has gone on to the new host: reflect it from here.
                            d @ Delivery::Reflect {
                                kind: ReflectKind::Loopback(..),
                                ..
                            } => self.reflect(d),
                            d => self.deliver(target, d, false),
                        }
                    }
                }
                self.drop_node(acc.vine);
            }
            other => {
                // Already resolved (or never a promise): keep it as it was.
                if let Some(n) = self.graph.nodes.get_mut(&node) {
                    n.kind = other;
                }
                self.drop_node(target);
                return;
            }
        }
        self.announce_resolution(node, target);
        // The references the queued calls held.
        for _ in 0..queued {
            self.drop_node(node);
        }
    }

    /// Sends a `Resolve` to every peer `node` was exported to as a promise.
    fn announce_resolution(&mut self, node: NodeId, target: NodeId) {
        let promised = match self.graph.nodes.get_mut(&node) {
            Some(n) => std::mem::take(&mut n.promised_to),
            None => return,
        };
        for (peer, export) in promised {
            self.send_resolve(peer, export, target);
        }
    }

    /// Lifts the embargo of `node`: what waited goes on to its target, in order.
    pub(crate) fn lift_embargo(&mut self, node: NodeId) {
        let Some(NodeKind::Forward {
            to,
            embargo,
            resolved_by,
            ..
        }) = self.graph.kind_mut(node)
        else {
            self.drop_node(node);
            return;
        };
        let (to, resolved_by) = (*to, *resolved_by);
        let Some(e) = embargo.take() else {
            self.drop_node(node);
            return;
        };
        for d in e.queue {
            match (&d, resolved_by) {
                // As in `deliver`: a reflect from the peer whose promise this was stops here.
                (
                    Delivery::Reflect {
                        from,
                        kind: ReflectKind::Loopback(..),
                    },
                    Some(p),
                ) if *from == p => self.reflect(d),
                _ => self.deliver(to, d, false),
            }
        }
        if let Some(r) = e.hold {
            self.drop_results(r);
        }
        // The embargo's own reference.
        self.drop_node(node);
    }
}

impl Graph {
    pub fn kind_mut(&mut self, node: NodeId) -> Option<&mut NodeKind> {
        self.nodes.get_mut(&node).map(|n| &mut n.kind)
    }
}

/// The path of pointer fields a promised answer names (no-ops skipped).
pub(crate) fn pipeline_path(pa: &PromisedAnswer) -> Vec<u16> {
    pa.transform
        .iter()
        .filter_map(|op| match op {
            crate::wire::PipelineOp::Noop => None,
            crate::wire::PipelineOp::GetPointerField(i) => Some(*i),
        })
        .collect()
}
