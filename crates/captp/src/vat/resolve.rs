//! Settlement and resolution: results settle (and send their `Return`), answers follow other
//! answers, promises resolve (raising an embargo where calls could be overtaken) and embargoes
//! lift.

use super::graph::{
    Delivery, Embargo, NodeId, NodeKind, ReflectKind, ResultsId, ResultsState, Via,
};
use super::{RpcBug, Vat, failed};
use crate::wire::{AnyValue, Disembargo, DisembargoContext, Exception, Message};
use std::collections::VecDeque;

impl Vat {
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
                    // (A pinned target goes on to its pin's promise, not past it.)
                    let next = match self.graph.kind(target) {
                        Some(NodeKind::Pinned { pin, .. }) => pin.stop,
                        _ => self.graph.latest(target),
                    };
                    if let Some(NodeKind::RemotePromise { used, peer: p2, .. }) =
                        self.graph.kind_mut(next)
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
    pub(crate) fn announce_resolution(&mut self, node: NodeId, target: NodeId) {
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
                        ..
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
