//! The export table: capabilities we sent the peer, under IDs we chose.
//!
//! Each time an export's ID goes out in a `CapDescriptor` (`senderHosted`/`senderPromise`) its
//! reference count grows by one; a `Release(id, n)` subtracts `n`, and releasing more than the
//! count is a protocol error. At zero the entry is removed and the ID becomes free (lowest
//! first, so it is reused). Exporting an object that is already in the table reuses its ID, as
//! the protocol requires, via an identity map from the object's key.
//!
//! `K` is the engine's identity for a local object (any ordered key).

use super::IdAllocator;
use crate::error::ProtocolError;
use crate::wire::ExportId;
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
struct Export<K> {
    object: K,
    refcount: u32,
}

#[derive(Clone, Debug)]
pub struct Exports<K> {
    entries: BTreeMap<ExportId, Export<K>>,
    by_object: BTreeMap<K, ExportId>,
    ids: IdAllocator,
}

impl<K: Ord + Clone> Default for Exports<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Ord + Clone> Exports<K> {
    pub fn new() -> Self {
        Exports {
            entries: BTreeMap::new(),
            by_object: BTreeMap::new(),
            ids: IdAllocator::with_limit(1 << 32),
        }
    }

    /// Records that `object` is being sent to the peer once more; returns its export ID (the
    /// existing one if it is already exported).
    pub fn export(&mut self, object: K) -> Result<ExportId, ProtocolError> {
        if let Some(&id) = self.by_object.get(&object)
            && let Some(e) = self.entries.get_mut(&id)
        {
            e.refcount = e
                .refcount
                .checked_add(1)
                .ok_or(ProtocolError::ExportCountOverflow { id })?;
            return Ok(id);
        }
        let id = self
            .ids
            .allocate()
            .ok_or(ProtocolError::IdsExhausted { table: "export" })?;
        self.by_object.insert(object.clone(), id);
        self.entries.insert(
            id,
            Export {
                object,
                refcount: 1,
            },
        );
        Ok(id)
    }

    /// Applies the peer's `Release(id, count)`. Returns the object when its last reference is
    /// gone (the entry is then removed and the ID freed).
    pub fn release(&mut self, id: ExportId, count: u32) -> Result<Option<K>, ProtocolError> {
        let e = self
            .entries
            .get_mut(&id)
            .ok_or(ProtocolError::ReleaseOfUnknownExport { id })?;
        if count > e.refcount {
            return Err(ProtocolError::OverRelease {
                id,
                held: e.refcount,
                released: count,
            });
        }
        e.refcount -= count;
        if e.refcount > 0 {
            return Ok(None);
        }
        let Some(e) = self.entries.remove(&id) else {
            return Ok(None); // unreachable: looked up above
        };
        self.by_object.remove(&e.object);
        self.ids.free(id);
        Ok(Some(e.object))
    }

    /// Puts `object` in the place of the entry `id` (same ID, same count); returns the object
    /// it held. The old object is no longer found by [`Exports::find`].
    pub fn replace(&mut self, id: ExportId, object: K) -> Option<K> {
        let e = self.entries.get_mut(&id)?;
        let old = std::mem::replace(&mut e.object, object.clone());
        if self.by_object.get(&old) == Some(&id) {
            self.by_object.remove(&old);
        }
        self.by_object.insert(object, id);
        Some(old)
    }

    /// The export ID of `object`, if it is exported.
    pub fn find(&self, object: &K) -> Option<ExportId> {
        self.by_object.get(object).copied()
    }

    pub fn object(&self, id: ExportId) -> Option<&K> {
        self.entries.get(&id).map(|e| &e.object)
    }

    /// References the peer holds (0 if not exported).
    pub fn refcount(&self, id: ExportId) -> u32 {
        self.entries.get(&id).map_or(0, |e| e.refcount)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `(id, object, refcount)` in ID order.
    pub fn iter(&self) -> impl Iterator<Item = (ExportId, &K, u32)> {
        self.entries
            .iter()
            .map(|(id, e)| (*id, &e.object, e.refcount))
    }

    /// Disconnect: every export is implicitly released; returns the objects in ID order.
    pub fn clear(&mut self) -> Vec<(ExportId, K)> {
        let out = std::mem::take(&mut self.entries)
            .into_iter()
            .map(|(id, e)| (id, e.object))
            .collect();
        *self = Exports::new();
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn same_object_same_id_and_counted() {
        let mut t = Exports::new();
        let a = t.export("alice").unwrap();
        let b = t.export("bob").unwrap();
        assert_ne!(a, b);
        assert_eq!(t.export("alice"), Ok(a));
        assert_eq!(t.refcount(a), 2);
        assert_eq!(t.release(a, 1), Ok(None));
        assert_eq!(t.release(a, 1), Ok(Some("alice")));
        assert_eq!(t.find(&"alice"), None);
        assert_eq!(t.export("carol"), Ok(a), "freed ID is reused");
    }

    #[test]
    fn replace_keeps_the_id_and_count() {
        let mut t = Exports::new();
        let a = t.export("alice").unwrap();
        t.export("alice").unwrap();
        assert_eq!(t.replace(a, "pin"), Some("alice"));
        assert_eq!(t.find(&"alice"), None);
        assert_eq!(t.find(&"pin"), Some(a));
        assert_eq!(t.refcount(a), 2);
        assert_eq!(t.replace(99, "x"), None);
        assert_eq!(t.release(a, 2), Ok(Some("pin")));
    }

    #[test]
    fn over_release_is_rejected_and_changes_nothing() {
        let mut t = Exports::new();
        let a = t.export(1u32).unwrap();
        let err = t.release(a, 2).unwrap_err();
        assert_eq!(
            err,
            ProtocolError::OverRelease {
                id: a,
                held: 1,
                released: 2
            }
        );
        assert!(err.to_string().contains("holds only 1"), "{err}");
        assert_eq!(t.refcount(a), 1);
        assert_eq!(
            t.release(77, 1),
            Err(ProtocolError::ReleaseOfUnknownExport { id: 77 })
        );
    }
}
