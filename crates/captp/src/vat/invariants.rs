//! The engine's own bookkeeping, checked after every step in debug builds (and so under the
//! fuzzers): a slip fails at the message or call that caused it, not hundreds of steps later
//! at quiescence. Nothing a peer sends may break these; a failure is an engine bug.
//!
//! - Nothing the engine holds names a node or results record that is gone.
//! - Every count covers at least the holders inside the engine (export entries, embargoes,
//!   answer paths and pins, forwarding links, queued calls, settled results, handoffs); the
//!   application's handles are the rest.
//! - Every embargo waiting for a `receiverLoopback` is on a resolved promise that holds an
//!   embargo queue, and every such queue is registered on exactly one connection.

use super::Vat;
use super::conn::{AnswerKind, QuestionKind};
use super::graph::{Delivery, NodeId, NodeKind, ResultsId, ResultsState};
use std::collections::BTreeMap;

#[derive(Default)]
struct Holds {
    nodes: BTreeMap<NodeId, u32>,
    results: BTreeMap<ResultsId, u32>,
}

impl Holds {
    fn node(&mut self, n: NodeId) {
        *self.nodes.entry(n).or_default() += 1;
    }

    fn results(&mut self, r: ResultsId) {
        *self.results.entry(r).or_default() += 1;
    }

    fn queue<'a>(&mut self, queue: impl Iterator<Item = &'a Delivery>) {
        for d in queue {
            if let Delivery::Call(c) = d {
                for &cap in &c.caps {
                    self.node(cap);
                }
                self.results(c.results);
            }
        }
    }
}

impl Vat {
    /// Panics if the engine's bookkeeping is inconsistent (see the module header).
    pub(crate) fn assert_invariants(&self) {
        let mut holds = Holds::default();
        let mut registered: BTreeMap<NodeId, usize> = BTreeMap::new();
        for (peer, conn) in &self.conns {
            for (_, &node, _) in conn.exports.iter() {
                holds.node(node);
            }
            for &node in conn.embargoes.values() {
                holds.node(node);
                *registered.entry(node).or_default() += 1;
                assert!(
                    matches!(
                        self.graph.kind(node),
                        Some(NodeKind::Forward {
                            embargo: Some(_),
                            ..
                        })
                    ),
                    "vat {}: an embargo towards vat {peer} is on node {node}, which holds no \
                     embargo queue",
                    self.id
                );
            }
            for rec in conn.answer_recs.values() {
                for &node in rec.pipelines.values().chain(rec.result_pins.values()) {
                    holds.node(node);
                }
                if let AnswerKind::Results { results, .. } = rec.kind {
                    holds.results(results);
                }
            }
            for rec in conn.question_recs.values() {
                match rec.kind {
                    QuestionKind::Provide { node, .. } | QuestionKind::Accept { node } => {
                        holds.node(node);
                    }
                    QuestionKind::Call { .. } => {}
                }
            }
        }
        let (nodes, results) = self.handoff_holds();
        nodes.into_iter().for_each(|n| holds.node(n));
        results.into_iter().for_each(|r| holds.results(r));
        for &r in self.calls.values() {
            holds.results(r);
        }
        for (id, node) in self.graph.nodes() {
            match &node.kind {
                NodeKind::Forward { to, embargo, .. } => {
                    holds.node(*to);
                    if let Some(e) = embargo {
                        holds.queue(e.queue.iter());
                        if let Some(r) = e.hold {
                            holds.results(r);
                        }
                        assert_eq!(
                            registered.get(&id).copied(),
                            Some(1),
                            "vat {}: node {id} holds an embargo queue that is not registered \
                             on exactly one connection",
                            self.id
                        );
                    }
                }
                NodeKind::Pinned { to, results, .. } => {
                    holds.node(*to);
                    if let Some(r) = results {
                        holds.results(*r);
                    }
                }
                NodeKind::ThirdParty(acc) => {
                    holds.node(acc.vine);
                    holds.queue(acc.queue.iter());
                }
                NodeKind::LocalPromise { results, queue } => {
                    holds.results(*results);
                    holds.queue(queue.iter());
                    // Each queued delivery keeps the promise alive.
                    for _ in queue {
                        holds.node(id);
                    }
                }
                NodeKind::RemotePromise { results, .. } => {
                    if let Some(r) = results {
                        holds.results(*r);
                    }
                }
                NodeKind::Null
                | NodeKind::Broken(_)
                | NodeKind::Local(_)
                | NodeKind::Import { .. } => {}
            }
        }
        for (_, r) in self.graph.all_results() {
            for &n in &r.held_pipelines {
                holds.node(n);
            }
            match &r.state {
                ResultsState::Done { caps, .. } => caps.iter().for_each(|&c| holds.node(c)),
                ResultsState::Following(inner) => holds.results(*inner),
                ResultsState::Pending | ResultsState::Failed(_) | ResultsState::Elsewhere => {}
            }
        }
        for (&node, &held) in &holds.nodes {
            let refs = self.graph.node(node).map(|n| n.refs);
            assert!(
                refs.is_some_and(|r| r >= held),
                "vat {}: node {node} is held {held} times inside the engine but its count is \
                 {refs:?}",
                self.id
            );
        }
        for (&results, &held) in &holds.results {
            let refs = self.graph.results(results).map(|r| r.refs);
            assert!(
                refs.is_some_and(|r| r >= held),
                "vat {}: results {results} are held {held} times inside the engine but the \
                 count is {refs:?}",
                self.id
            );
        }
    }
}
