//! What waits for what in an RPC workload, so that the workload never builds a promise cycle:
//! an answer settled by another answer (`return_answer`, a tail call), by a promise, or a
//! call's answer waiting for the promise it was made on. A cycle of these is an application
//! deadlock that no vat can see when it spans vats, and Cap'n Proto has no distributed garbage
//! collection to reclaim it (each vat keeps its question or its queued call alive for the
//! other's answer), so a workload that made one would only be measuring its own leak.

use models::rpc::{EOrder, ShadowId};

/// The waits-for relation over shadow references (see the module comment).
#[derive(Debug, Default)]
pub struct Waits {
    /// (waiter, awaited).
    edges: Vec<(ShadowId, ShadowId)>,
}

impl Waits {
    /// Records that `waiter` waits for `awaited`, without checking for a cycle (for a fresh
    /// answer, which nothing waits for yet).
    pub fn add(&mut self, waiter: ShadowId, awaited: ShadowId) {
        self.edges.push((waiter, awaited));
    }

    /// Records that `waiter` now waits for `awaited`, unless that would close a cycle;
    /// returns whether it was recorded.
    pub fn follow(&mut self, eorder: &mut EOrder, waiter: ShadowId, awaited: ShadowId) -> bool {
        if self.waits_for(eorder, awaited, waiter) {
            return false;
        }
        self.add(waiter, awaited);
        true
    }

    /// Whether `waiter` waits, directly or through others, for `awaited`. What designates a
    /// known object waits for nothing.
    pub fn waits_for(&self, eorder: &mut EOrder, waiter: ShadowId, awaited: ShadowId) -> bool {
        let mut frontier = vec![waiter];
        let mut seen: Vec<ShadowId> = Vec::new();
        while let Some(s) = frontier.pop() {
            if eorder.same(s, awaited) {
                return true;
            }
            if eorder.resolved(s) || seen.iter().any(|&x| eorder.same(x, s)) {
                continue;
            }
            seen.push(s);
            for &(a, b) in &self.edges {
                if eorder.same(a, s) {
                    frontier.push(b);
                }
            }
        }
        false
    }
}
