//! [`SharedMemory`] over a raw mapping. The guest reaches the shared region through its identity
//! map and the host through its mmap of guest RAM; both sides run the same ring code on these
//! real loads, stores and fences. Every access is bounds-checked against the view (the peer is
//! untrusted, and a monitor relay gets a view of its own pipe only); an access outside the view
//! is a [`MemFault`] and is counted, so a run can report it. Cursors and flags must be 8-aligned:
//! a misaligned atomic access is refused the same way.
#![no_std]

extern crate alloc;

use alloc::sync::Arc;
use core::any::Any;
use core::sync::atomic::{AtomicU64, Ordering};
use ring_pipe::{MemFault, SharedMemory};

/// A view of a shared region through a raw pointer.
#[derive(Clone)]
pub struct RawShm {
    base: *mut u8,
    len: u64,
    faults: Arc<AtomicU64>,
    /// Whatever owns the mapping (the VMM's mmap), kept alive as long as any view.
    _owner: Option<Arc<dyn Any + Send + Sync>>,
}

impl RawShm {
    /// A view of `len` bytes at `base`.
    ///
    /// # Safety
    /// `base..base + len` must stay mapped and writable for as long as this view or any clone or
    /// sub-view of it exists (for a host mapping, pass its owner so that holds by construction).
    /// Other parties may write it concurrently; this view only makes atomic accesses to cursors
    /// and flags, and plain copies of ring data that the ring protocol hands over.
    #[allow(unsafe_code)]
    pub unsafe fn new(base: *mut u8, len: u64, owner: Option<Arc<dyn Any + Send + Sync>>) -> Self {
        Self {
            base,
            len,
            faults: Arc::default(),
            _owner: owner,
        }
    }

    /// A sub-view of `len` bytes at `offset`, sharing this view's fault counter. Out of range is a
    /// fault like any access.
    pub fn bounded(&self, offset: u64, len: u64) -> Result<Self, MemFault> {
        let start = self.check(offset, len)?;
        Ok(Self {
            base: start,
            len,
            faults: self.faults.clone(),
            _owner: self._owner.clone(),
        })
    }

    /// Accesses refused because they fell outside the view.
    pub fn faults(&self) -> u64 {
        self.faults.load(Ordering::Relaxed)
    }

    fn check(&self, offset: u64, len: u64) -> Result<*mut u8, MemFault> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => {
                // In range of the view, so in range of the mapping (`new`'s contract).
                Ok(self.base.wrapping_add(offset as usize))
            }
            _ => {
                self.faults.fetch_add(1, Ordering::Relaxed);
                Err(MemFault { offset, len })
            }
        }
    }

    fn atomic(&self, offset: u64) -> Result<&AtomicU64, MemFault> {
        let p = self.check(offset, 8)?;
        if !(p as usize).is_multiple_of(8) {
            self.faults.fetch_add(1, Ordering::Relaxed);
            return Err(MemFault { offset, len: 8 });
        }
        // SAFETY: `p` is in the mapping (checked), 8-aligned (checked) and valid for the view's
        // lifetime (`new`); AtomicU64 has the layout of u64 and every access to these 8 bytes
        // by this side is atomic.
        #[allow(unsafe_code)]
        Ok(unsafe { AtomicU64::from_ptr(p.cast::<u64>()) })
    }
}

impl SharedMemory for RawShm {
    fn size(&self) -> u64 {
        self.len
    }

    async fn load_u64(&self, offset: u64, order: Ordering) -> Result<u64, MemFault> {
        Ok(self.atomic(offset)?.load(order))
    }

    async fn store_u64(&self, offset: u64, value: u64, order: Ordering) -> Result<(), MemFault> {
        self.atomic(offset)?.store(value, order);
        Ok(())
    }

    async fn fence(&self, order: Ordering) {
        core::sync::atomic::fence(order);
    }

    async fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), MemFault> {
        let p = self.check(offset, buf.len() as u64)?;
        // SAFETY: the source range is in the mapping (checked) and `buf` is ours. The ring hands
        // these bytes over (the writer published them with a release store we acquired), so the
        // peer does not write them during the copy unless it is hostile, and then only the
        // copied values are wrong, which the reader's checks handle.
        #[allow(unsafe_code)]
        unsafe {
            core::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), buf.len())
        };
        Ok(())
    }

    async fn write(&self, offset: u64, data: &[u8]) -> Result<(), MemFault> {
        let p = self.check(offset, data.len() as u64)?;
        // SAFETY: as in `read`: in range, and the space belongs to the writer until it publishes.
        #[allow(unsafe_code)]
        unsafe {
            core::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len())
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring_pipe::mem::complete_now;

    fn view(buf: &mut [u64]) -> RawShm {
        // SAFETY: the buffer outlives the view in each test.
        #[allow(unsafe_code)]
        unsafe {
            RawShm::new(buf.as_mut_ptr().cast(), (buf.len() * 8) as u64, None)
        }
    }

    #[test]
    fn accesses_stay_in_the_view_and_faults_are_counted() {
        let mut backing = [0u64; 8];
        let shm = view(&mut backing);
        let sub = shm.bounded(16, 32).expect("in range");
        assert_eq!(
            complete_now(sub.store_u64(0, 7, Ordering::Release)),
            Some(Ok(()))
        );
        assert_eq!(
            complete_now(shm.load_u64(16, Ordering::Acquire)),
            Some(Ok(7))
        );
        assert!(matches!(
            complete_now(sub.load_u64(32, Ordering::Relaxed)),
            Some(Err(_))
        ));
        assert!(matches!(
            complete_now(sub.write(30, &[1, 2, 3])),
            Some(Err(_))
        ));
        assert!(matches!(
            complete_now(sub.load_u64(4, Ordering::Relaxed)),
            Some(Err(_))
        ));
        assert!(shm.bounded(60, 8).is_err());
        assert!(sub.bounded(u64::MAX, 2).is_err());
        assert_eq!(shm.faults(), 5);
        assert_eq!(complete_now(sub.write(8, &[9; 8])), Some(Ok(())));
        let mut out = [0u8; 8];
        assert_eq!(complete_now(shm.read(24, &mut out)), Some(Ok(())));
        assert_eq!(out, [9; 8]);
    }
}
