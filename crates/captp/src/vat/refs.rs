//! References: calls' counted holds, dropping a node or results record and what that gives
//! back (an import's `Release`, a question's `Finish`), the Tribble pin, and the promise nodes
//! pipelined on results.

use super::graph::{CallMsg, NodeId, NodeKind, Pin, ResultsId, ResultsState, Via, pipeline_path};
use super::{RpcBug, Vat, VatId, failed};
use crate::wire::{AnyValue, ImportId, Message, MessageTarget, PromisedAnswer};
use std::collections::VecDeque;

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
            pin: None,
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
                NodeKind::Pinned { to, results, .. } => {
                    if let Some(r) = results {
                        self.drop_results(r);
                    }
                    pending.push(to);
                }
                NodeKind::Null | NodeKind::Broken(_) | NodeKind::Local(_) => {}
            }
        }
    }

    /// A [`NodeKind::Pinned`] node for `node` as described to `peer`, if `node` is one of
    /// `peer`'s own unresolved promises (a new reference), else `None`.
    pub(crate) fn pin_for(&mut self, peer: VatId, start: NodeId) -> Option<NodeId> {
        let node = self.graph.latest(start);
        let Some(NodeKind::RemotePromise {
            peer: p,
            target,
            results,
            ..
        }) = self.graph.kind(node)
        else {
            return None;
        };
        if *p != peer {
            return None;
        }
        let (target, results) = (target.clone(), *results);
        let epoch = self.conns.get(&peer)?.epoch;
        self.graph.add_ref(start);
        if let Some(r) = results {
            self.graph.add_results_ref(r);
        }
        Some(self.graph.new_node(NodeKind::Pinned {
            to: start,
            pin: Pin {
                stop: node,
                peer,
                epoch,
                target,
            },
            results,
        }))
    }

    pub(crate) fn forget_pipeline(&mut self, results: ResultsId, target: &MessageTarget) {
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

    pub(crate) fn forget_local_pipeline(&mut self, results: ResultsId, node: NodeId) {
        if let Some(r) = self.graph.results.get_mut(&results) {
            r.pipelines.retain(|_, n| *n != node);
        }
    }

    /// Sends the `Release` for an import we no longer reference.
    pub(crate) fn release_import(&mut self, peer: VatId, id: ImportId) {
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
    pub(crate) fn hold_pipeline(&mut self, results: ResultsId, path: Vec<u16>, node: NodeId) {
        let r = self.graph.results_mut(results);
        if r.resolved_pipelines.insert(path, node) != Some(node) {
            r.held_pipelines.push(node);
            self.graph.add_ref(node);
        }
    }

    pub(crate) fn pipeline_node_of(&mut self, results: ResultsId, path: &[u16]) -> NodeId {
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
}
