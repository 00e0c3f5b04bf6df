//! The link of the duel: the queues of the one connection between our vat and capnp-rpc
//! (`rpc/link.rs`), the position of every delivered message, and the record of what crossed
//! that the blame rules read (`blame.rs`). Positions count across connections and the record
//! is never cleared: a call can cross on one connection and arrive on the next.

use crate::rpc::link::Link;
use captp::VatId;
use captp::probe::{CALL_METHOD, PROBE_INTERFACE_ID, ProbeCall};
use captp::wire::{DisembargoContext, Message, MessageTarget, SendResultsTo};
use std::collections::BTreeMap;

/// One crossing of the link by a `Probe.call`.
pub struct Crossing {
    pub from: VatId,
    pub pos: u64,
    pub target: MessageTarget,
    /// Sent with `sendResultsTo.yourself` (a tail call).
    pub yourself: bool,
}

/// One `Disembargo` that crossed the link.
pub struct Loopback {
    pub from: VatId,
    pub pos: u64,
    pub context: DisembargoContext,
    pub target: MessageTarget,
}

impl Loopback {
    /// Its embargo, if it is a `senderLoopback` (one that asks for a reflection).
    pub fn embargo(&self) -> Option<u32> {
        match self.context {
            DisembargoContext::SenderLoopback(embargo) => Some(embargo),
            _ => None,
        }
    }
}

pub struct DuelLink {
    pub queues: Link,
    /// Delivered messages so far (positions on the link, across connections).
    pub delivered: u64,
    /// Every crossing of each call, by the call's `(ref, seq)`.
    crossings: BTreeMap<(u64, u64), Vec<Crossing>>,
    pub loopbacks: Vec<Loopback>,
}

impl DuelLink {
    pub fn new(max_delay: u64) -> Self {
        DuelLink {
            queues: Link::new(max_delay),
            delivered: 0,
            crossings: BTreeMap::new(),
            loopbacks: Vec::new(),
        }
    }

    /// `msg` from `from` was delivered: records it and returns its position.
    pub fn delivered(&mut self, from: VatId, msg: &Message) -> u64 {
        self.delivered += 1;
        let pos = self.delivered;
        match msg {
            Message::Call(c)
                if c.interface_id == PROBE_INTERFACE_ID && c.method_id == CALL_METHOD =>
            {
                if let Ok(p) = ProbeCall::from_value(&c.params.content) {
                    self.crossings
                        .entry((p.ref_id, p.seq))
                        .or_default()
                        .push(Crossing {
                            from,
                            pos,
                            target: c.target.clone(),
                            yourself: c.send_results_to == SendResultsTo::Yourself,
                        });
                }
            }
            Message::Disembargo(d) => self.loopbacks.push(Loopback {
                from,
                pos,
                context: d.context.clone(),
                target: d.target.clone(),
            }),
            _ => {}
        }
        pos
    }

    /// The first reflection by `by`, after position `after`, of the `senderLoopback`
    /// `embargo` (its `receiverLoopback`).
    pub fn reflection(&self, by: VatId, after: u64, embargo: u32) -> Option<&Loopback> {
        self.loopbacks.iter().find(|r| {
            r.from == by
                && r.pos > after
                && r.context == DisembargoContext::ReceiverLoopback(embargo)
        })
    }

    /// Every crossing of call `seq` on `reference`, in order.
    pub fn crossings(&self, reference: u64, seq: u64) -> &[Crossing] {
        self.crossings
            .get(&(reference, seq))
            .map_or(&[], Vec::as_slice)
    }
}
