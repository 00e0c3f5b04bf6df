//! The import table: capabilities the peer sent us, keyed by the peer's export ID.
//!
//! We count how many times each ID arrived in a `CapDescriptor`. When we drop the import we
//! owe the peer one `Release` carrying that whole count. A reference still in flight when we
//! drop it simply re-creates the entry with a count of one: the exporter counted it too, so
//! the counts on both sides still balance.

use crate::error::ProtocolError;
use crate::wire::{ImportId, Release};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default)]
pub struct Imports {
    received: BTreeMap<ImportId, u32>,
}

impl Imports {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one more receipt of `id` (`senderHosted` or `senderPromise`). Returns whether
    /// the import is new.
    pub fn on_received(&mut self, id: ImportId) -> Result<bool, ProtocolError> {
        match self.received.get_mut(&id) {
            Some(n) => {
                *n = n
                    .checked_add(1)
                    .ok_or(ProtocolError::ImportCountOverflow { id })?;
                Ok(false)
            }
            None => {
                self.received.insert(id, 1);
                Ok(true)
            }
        }
    }

    /// Drops the import: removes it and returns the `Release` we now owe the peer.
    pub fn drop_import(&mut self, id: ImportId) -> Result<Release, ProtocolError> {
        let reference_count = self
            .received
            .remove(&id)
            .ok_or(ProtocolError::DropOfUnknownImport { id })?;
        Ok(Release {
            id,
            reference_count,
        })
    }

    /// Gives up `count` of the receipts of `id` (removing the entry at zero) and returns the
    /// matching `Release`. The caller sends it, or not when the protocol releases implicitly
    /// (`Return.releaseParamCaps`, `Finish.releaseResultCaps`).
    pub fn release(&mut self, id: ImportId, count: u32) -> Result<Release, ProtocolError> {
        let held = self
            .received
            .get_mut(&id)
            .ok_or(ProtocolError::DropOfUnknownImport { id })?;
        *held = held
            .checked_sub(count)
            .ok_or(ProtocolError::ImportOverRelease {
                id,
                held: *held,
                released: count,
            })?;
        if *held == 0 {
            self.received.remove(&id);
        }
        Ok(Release {
            id,
            reference_count: count,
        })
    }

    /// How many receipts of `id` we have not released yet (0 if not imported).
    pub fn count(&self, id: ImportId) -> u32 {
        self.received.get(&id).copied().unwrap_or(0)
    }

    pub fn contains(&self, id: ImportId) -> bool {
        self.received.contains_key(&id)
    }

    pub fn len(&self) -> usize {
        self.received.len()
    }

    pub fn is_empty(&self) -> bool {
        self.received.is_empty()
    }

    /// `(id, count)` in ID order.
    pub fn iter(&self) -> impl Iterator<Item = (ImportId, u32)> {
        self.received.iter().map(|(id, n)| (*id, *n))
    }

    /// Disconnect: forgets every import (no `Release` is sent); returns their IDs in order.
    pub fn clear(&mut self) -> Vec<ImportId> {
        std::mem::take(&mut self.received).into_keys().collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn drop_owes_the_received_count() {
        let mut t = Imports::new();
        assert_eq!(t.on_received(5), Ok(true));
        assert_eq!(t.on_received(5), Ok(false));
        assert_eq!(t.on_received(5), Ok(false));
        assert_eq!(
            t.drop_import(5),
            Ok(Release {
                id: 5,
                reference_count: 3
            })
        );
        assert!(t.is_empty());
        t.on_received(5).unwrap();
        t.on_received(5).unwrap();
        assert_eq!(t.release(5, 1).map(|r| r.reference_count), Ok(1));
        assert_eq!(t.count(5), 1);
        assert_eq!(
            t.release(5, 2),
            Err(ProtocolError::ImportOverRelease {
                id: 5,
                held: 1,
                released: 2
            })
        );
        assert_eq!(t.release(5, 1).map(|r| r.reference_count), Ok(1));
        assert_eq!(
            t.drop_import(5),
            Err(ProtocolError::DropOfUnknownImport { id: 5 })
        );
    }
}
