//! Routing: a call or a reflected disembargo travels the graph hop by hop, waits in a queue or
//! an embargo, leaves for a peer, reaches a local object, or fails.

use super::graph::{CallMsg, Delivery, NodeId, NodeKind, ReflectKind};
use super::{ObjectId, RpcBug, Vat, VatEvent, VatId, failed};
use crate::wire::{Disembargo, DisembargoContext, Exception, Message, MessageTarget};

impl Vat {
    /// Routes a delivery along the graph from `node`, hop by hop. `forwarded` marks deliveries
    /// that arrived from a peer (the ones the `ForwardToLatest` bug shortcuts).
    pub(crate) fn deliver(&mut self, node: NodeId, mut d: Delivery, forwarded: bool) {
        if d.stale(|p| self.conns.get(&p).map(|c| c.epoch)) {
            return;
        }
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
            if let Some(pin) = d.pin().filter(|p| p.stop == at).cloned() {
                // A promise that has since resolved into this vat closed its old path with a
                // `Disembargo`: nothing may follow that down the wire, or it would come back
                // after calls released by the reflection. Go on along the resolution (through
                // its embargo, if still up), as the promise's own callers do.
                let home = matches!(
                    self.graph.kind(self.graph.latest(at)),
                    Some(
                        NodeKind::Local(_)
                            | NodeKind::LocalPromise { .. }
                            | NodeKind::Null
                            | NodeKind::Broken(_)
                    )
                );
                if !home
                    && self
                        .conns
                        .get(&pin.peer)
                        .is_some_and(|c| c.epoch == pin.epoch)
                {
                    if matches!(d, Delivery::Call(_))
                        && let Some(NodeKind::RemotePromise { used, .. }) = self.graph.kind_mut(at)
                    {
                        *used = true;
                    }
                    self.deliver_remote(at, pin.peer, pin.target, d);
                    return;
                }
                // (Or that connection is gone, and the promise broke with it.)
                d.set_pin(None);
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
                } if matches!(&d, Delivery::Reflect { from, kind: ReflectKind::Loopback(..), .. } if from == p) =>
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
                NodeKind::Pinned { to, pin, .. } => {
                    let (to, pin) = (*to, pin.clone());
                    d.set_pin(Some(pin));
                    at = to;
                }
            }
        }
    }

    pub(crate) fn deliver_remote(
        &mut self,
        node: NodeId,
        peer: VatId,
        target: MessageTarget,
        d: Delivery,
    ) {
        match d {
            Delivery::Call(call) => self.send_call(peer, target, call),
            Delivery::Reflect {
                from,
                kind: ReflectKind::Loopback(id, _),
                ..
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
                ..
            } => self.forward_accept_disembargo(from, node, peer, target, provision),
        }
    }

    /// Reflects a loopback disembargo to its sender where it stands, naming the target the
    /// sender named (the route no longer ends at the sender's connection; see the callers).
    pub(crate) fn reflect(&mut self, d: Delivery) {
        if d.stale(|p| self.conns.get(&p).map(|c| c.epoch)) {
            return;
        }
        if let Delivery::Reflect {
            from,
            kind: ReflectKind::Loopback(id, named),
            ..
        } = d
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

    pub(crate) fn deliver_local(&mut self, object: ObjectId, call: CallMsg) {
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
}
