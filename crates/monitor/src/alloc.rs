//! Placement of pipes in the shared region: first-fit over a free list, 64-byte aligned, with a
//! ledger of which pipe owns which range. A range is reused only after its pipe is released.

use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub offset: u64,
    pub len: u64,
}

pub struct RegionAllocator {
    /// Free ranges by offset.
    free: BTreeMap<u64, u64>,
    /// Owner pipe id -> its placement.
    owned: BTreeMap<u64, Placement>,
}

const ALIGN: u64 = 64;

impl RegionAllocator {
    /// Manages `[start, end)`.
    pub fn new(start: u64, end: u64) -> Self {
        let start = start.div_ceil(ALIGN) * ALIGN;
        let mut free = BTreeMap::new();
        if end > start {
            free.insert(start, end - start);
        }
        Self {
            free,
            owned: BTreeMap::new(),
        }
    }

    pub fn alloc(&mut self, owner: u64, len: u64) -> Option<Placement> {
        let len = len.checked_next_multiple_of(ALIGN)?;
        let (&offset, &size) = self.free.iter().find(|(_, size)| **size >= len)?;
        self.free.remove(&offset);
        if size > len {
            self.free.insert(offset + len, size - len);
        }
        let p = Placement { offset, len };
        self.owned.insert(owner, p);
        Some(p)
    }

    /// Returns `owner`'s range to the free list, merging neighbours.
    pub fn release(&mut self, owner: u64) -> Option<Placement> {
        let p = self.owned.remove(&owner)?;
        let (mut offset, mut len) = (p.offset, p.len);
        if let Some((&prev, &plen)) = self.free.range(..offset).next_back()
            && prev + plen == offset
        {
            self.free.remove(&prev);
            offset = prev;
            len += plen;
        }
        if let Some(&nlen) = self.free.get(&(offset + len)) {
            self.free.remove(&(offset + len));
            len += nlen;
        }
        self.free.insert(offset, len);
        Some(p)
    }

    pub fn owner_of(&self, owner: u64) -> Option<Placement> {
        self.owned.get(&owner).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_fit_reuse_and_merge() {
        let mut a = RegionAllocator::new(100, 100 + 64 * 10);
        let p1 = a.alloc(1, 100).expect("room");
        assert_eq!(
            p1,
            Placement {
                offset: 128,
                len: 128
            }
        );
        let p2 = a.alloc(2, 64).expect("room");
        assert_eq!(p2.offset, 256);
        assert_eq!(a.alloc(3, 64 * 10), None);
        a.release(1);
        a.release(2);
        // Everything merged back: the whole aligned range is one block again.
        assert_eq!(a.alloc(4, 64 * 9).map(|p| p.offset), Some(128));
        assert_eq!(a.release(99), None);
    }

    #[test]
    fn live_ranges_never_overlap() {
        let mut a = RegionAllocator::new(0, 64 * 64);
        let mut live: Vec<(u64, Placement)> = Vec::new();
        for i in 0..200u64 {
            if i % 3 == 2 && !live.is_empty() {
                let (id, _) = live.remove((i as usize * 7) % live.len());
                a.release(id);
            } else if let Some(p) = a.alloc(i, 64 * (1 + i % 5)) {
                for (_, q) in &live {
                    assert!(
                        p.offset + p.len <= q.offset || q.offset + q.len <= p.offset,
                        "{p:?} overlaps {q:?}"
                    );
                }
                live.push((i, p));
            }
        }
    }
}
