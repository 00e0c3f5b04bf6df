//! The four per-connection tables of `rpc.capnp`, with their ID and reference-count rules.
//!
//! Each vat's [`Questions`] mirror the peer's [`Answers`] (IDs chosen by the asker), and its
//! [`Imports`] mirror the peer's [`Exports`] (IDs chosen by the exporter). The tables only keep
//! the bookkeeping that decides when an ID is live, retired or reusable; what an entry *means*
//! (a pending call, a promise, a local object) belongs to the connection state machine.
//!
//! Every rule a peer can break is a [`ProtocolError`](crate::ProtocolError). Only ordered
//! containers are used, so iteration (e.g. failing every question on disconnect) is
//! deterministic.

mod answers;
mod exports;
mod imports;
mod questions;

pub use answers::{Answer, Answers};
pub use exports::Exports;
pub use imports::Imports;
pub use questions::{Question, Questions};

use std::collections::BTreeSet;

/// Hands out the lowest ID not in use, as the C++ implementation does, so that IDs are reused
/// as soon as they are retired (which is what exercises the reuse rules).
#[derive(Clone, Debug, Default)]
pub(crate) struct IdAllocator {
    /// IDs below `next` that are free; every other ID below `next` is in use.
    free: BTreeSet<u32>,
    /// One past the highest ID ever simultaneously in use (u64: `limit` may be 2^32).
    next: u64,
    /// Exclusive upper bound of the IDs this allocator may hand out.
    limit: u64,
}

impl IdAllocator {
    pub(crate) fn with_limit(limit: u64) -> Self {
        IdAllocator {
            free: BTreeSet::new(),
            next: 0,
            limit,
        }
    }

    pub(crate) fn allocate(&mut self) -> Option<u32> {
        if let Some(id) = self.free.pop_first() {
            return Some(id);
        }
        if self.next >= self.limit {
            return None;
        }
        let id = u32::try_from(self.next).ok()?;
        self.next += 1;
        Some(id)
    }

    /// Returns `id` to the pool. The caller guarantees it was allocated and is not yet free.
    pub(crate) fn free(&mut self, id: u32) {
        if u64::from(id) + 1 == self.next {
            // Shrink instead of growing the free set, so it stays small.
            self.next -= 1;
            while let Some(&last) = self.free.last() {
                if u64::from(last) + 1 != self.next {
                    break;
                }
                self.free.pop_last();
                self.next -= 1;
            }
        } else {
            self.free.insert(id);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn lowest_free_id_is_reused() {
        let mut ids = IdAllocator::with_limit(10);
        let got: Vec<u32> = (0..4).map(|_| ids.allocate().unwrap()).collect();
        assert_eq!(got, [0, 1, 2, 3]);
        ids.free(2);
        ids.free(0);
        assert_eq!(ids.allocate(), Some(0));
        assert_eq!(ids.allocate(), Some(2));
        assert_eq!(ids.allocate(), Some(4));
        ids.free(4);
        ids.free(3);
        assert_eq!(ids.allocate(), Some(3));
    }

    #[test]
    fn allocation_stops_at_the_limit() {
        let mut ids = IdAllocator::with_limit(2);
        assert_eq!(ids.allocate(), Some(0));
        assert_eq!(ids.allocate(), Some(1));
        assert_eq!(ids.allocate(), None);
        ids.free(0);
        assert_eq!(ids.allocate(), Some(0));
    }
}
