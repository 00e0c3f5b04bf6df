//! Calls from a peer that are still queued inside this vat (on a local promise, behind an
//! embargo, or waiting for a handoff) when that peer cancels them or goes away.
//!
//! Rule: such a call is taken out of its queue and fails at once, giving back what it held.
//! Nobody else can want its results (only the peer that asked can name them), and left in
//! place it would keep its promise, its arguments and everything pipelined on its results
//! alive: when those wait for each other (a peer can pipeline a call on an answer whose
//! results will come from a call pipelined on that call's own results), nothing ever frees
//! them, and a peer could grow this vat's memory at will. The C++ implementation does the
//! same by cancelling the call's promise chain when the connection is lost or a `Finish`
//! arrives before the `Return`. Calls the application already has are not touched: it gets a
//! `Cancelled` event and may still answer.

use super::Vat;
use super::graph::{Delivery, NodeId, NodeKind, ResultsId};
use crate::wire::Exception;
use std::collections::{BTreeSet, VecDeque};

/// Moves the calls producing one of `results` out of `queue` into `taken`; returns how many.
fn take_calls(
    queue: &mut VecDeque<Delivery>,
    results: &BTreeSet<ResultsId>,
    taken: &mut Vec<Delivery>,
) -> usize {
    let before = taken.len();
    let mut kept = VecDeque::with_capacity(queue.len());
    for d in queue.drain(..) {
        match &d {
            Delivery::Call(c) if results.contains(&c.results) => taken.push(d),
            _ => kept.push_back(d),
        }
    }
    *queue = kept;
    taken.len() - before
}

impl Vat {
    /// Fails, with `e`, every queued call whose results are one of `results`.
    pub(crate) fn cancel_queued(&mut self, results: &BTreeSet<ResultsId>, e: &Exception) {
        if results.is_empty() {
            return;
        }
        let mut taken = Vec::new();
        let mut self_refs: Vec<NodeId> = Vec::new();
        for (id, node) in self.graph.nodes_mut() {
            match &mut node.kind {
                NodeKind::LocalPromise { queue, .. } => {
                    // Each call queued on a local promise holds a reference to it.
                    let n = take_calls(queue, results, &mut taken);
                    self_refs.extend(std::iter::repeat_n(id, n));
                }
                NodeKind::Forward {
                    embargo: Some(embargo),
                    ..
                } => {
                    take_calls(&mut embargo.queue, results, &mut taken);
                }
                NodeKind::ThirdParty(acc) => {
                    take_calls(&mut acc.queue, results, &mut taken);
                }
                _ => {}
            }
        }
        for d in taken {
            self.fail_delivery(d, e);
        }
        for node in self_refs {
            self.drop_node(node);
        }
    }
}
