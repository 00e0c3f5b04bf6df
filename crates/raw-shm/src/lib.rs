//! [`SharedMemory`] over a raw mapping. The guest reaches the shared region through its identity
//! map and the host through its mmap of guest RAM; both sides run the same ring code on these
//! real loads, stores and fences. Offsets are relative to the region's start in every view, as
//! in the simulation's `SimShm`; a view may be limited to a window of the region (a monitor
//! relay gets its own pipe's rings only). Every access is bounds-checked (the peer is untrusted);
//! one outside the view is a [`MemFault`] and is counted, so a run can report it. Cursors and
//! flags must be 8-aligned: a misaligned atomic access is refused the same way.
//!
//! A view can carry [`Jitter`]: seeded pauses after loads and before stores, which widen the
//! windows between one side's check and its act so that races the simulation reaches by
//! scheduling also show on real cores (the idea of KCSAN's delays and rr's chaos mode). The
//! ring code is unchanged; only how long each access appears to take.
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
    /// The accessible part, `[start, end)`.
    window: (u64, u64),
    faults: Arc<AtomicU64>,
    jitter: Option<Arc<Jitter>>,
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
            window: (0, len),
            faults: Arc::default(),
            jitter: None,
            _owner: owner,
        }
    }

    /// The same region, limited to `[offset, offset + len)` (and to this view's window);
    /// faults are counted with this view's.
    pub fn bounded(&self, offset: u64, len: u64) -> Self {
        let end = offset.saturating_add(len);
        Self {
            base: self.base,
            len: self.len,
            window: (offset.max(self.window.0), end.min(self.window.1)),
            faults: self.faults.clone(),
            jitter: self.jitter.clone(),
            _owner: self._owner.clone(),
        }
    }

    /// This view, and every sub-view made from it afterwards, pauses at accesses as `jitter`
    /// decides.
    pub fn with_jitter(mut self, jitter: Arc<Jitter>) -> Self {
        self.jitter = Some(jitter);
        self
    }

    fn pause(&self) {
        if let Some(j) = &self.jitter {
            j.pause();
        }
    }

    /// Accesses refused because they fell outside the view.
    pub fn faults(&self) -> u64 {
        self.faults.load(Ordering::Relaxed)
    }

    fn check(&self, offset: u64, len: u64) -> Result<*mut u8, MemFault> {
        match offset.checked_add(len) {
            Some(end) if offset >= self.window.0 && end <= self.window.1 && end <= self.len => {
                // In range of the region, so in range of the mapping (`new`'s contract).
                Ok(self.base.wrapping_add(offset as usize))
            }
            _ => {
                self.faults.fetch_add(1, Ordering::Relaxed);
                Err(MemFault { offset, len })
            }
        }
    }

    /// The 8 bytes at `offset` as an atomic, for a word outside any ring (an event counter).
    pub fn atomic_u64(&self, offset: u64) -> Result<&AtomicU64, MemFault> {
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
        let value = self.atomic_u64(offset)?.load(order);
        // After the load: the value goes stale while the caller acts on it.
        self.pause();
        Ok(value)
    }

    async fn store_u64(&self, offset: u64, value: u64, order: Ordering) -> Result<(), MemFault> {
        let word = self.atomic_u64(offset)?;
        // Before the store: the publication comes late.
        self.pause();
        word.store(value, order);
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

/// Seeded pauses at shared-memory accesses: one access in `one_in` is followed by a busy wait
/// of up to `max_spins` spin-loop hints. Shared by every view of one side (so one seed gives
/// one sequence of choices per side); the generator is a xorshift advanced with relaxed
/// atomics, since only the distribution matters on hardware, not exact replay.
pub struct Jitter {
    state: AtomicU64,
    one_in: u64,
    max_spins: u64,
}

impl Jitter {
    pub fn new(seed: u64, one_in: u32, max_spins: u32) -> Self {
        Self {
            // xorshift has one fixed point, zero.
            state: AtomicU64::new(seed | 1),
            one_in: u64::from(one_in),
            max_spins: u64::from(max_spins).max(1),
        }
    }

    fn next(&self) -> u64 {
        let mut x = self.state.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state.store(x, Ordering::Relaxed);
        x
    }

    /// Maybe pauses; returns the spins spent.
    pub fn pause(&self) -> u64 {
        if self.one_in == 0 {
            return 0;
        }
        let x = self.next();
        if !(x & 0xffff_ffff).is_multiple_of(self.one_in) {
            return 0;
        }
        let spins = (x >> 32) % self.max_spins;
        for _ in 0..spins {
            core::hint::spin_loop();
        }
        spins
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
        let sub = shm.bounded(16, 32);
        assert_eq!(
            complete_now(sub.store_u64(16, 7, Ordering::Release)),
            Some(Ok(()))
        );
        assert_eq!(
            complete_now(shm.load_u64(16, Ordering::Acquire)),
            Some(Ok(7))
        );
        assert!(matches!(
            complete_now(sub.load_u64(48, Ordering::Relaxed)),
            Some(Err(_))
        ));
        assert!(matches!(
            complete_now(sub.load_u64(8, Ordering::Relaxed)),
            Some(Err(_))
        ));
        assert!(matches!(
            complete_now(sub.write(46, &[1, 2, 3])),
            Some(Err(_))
        ));
        assert!(matches!(
            complete_now(sub.load_u64(20, Ordering::Relaxed)),
            Some(Err(_))
        ));
        let outside = shm.bounded(60, 8);
        assert!(matches!(
            complete_now(outside.load_u64(60, Ordering::Relaxed)),
            Some(Err(_))
        ));
        let wrapped = sub.bounded(u64::MAX, 2);
        assert!(matches!(
            complete_now(wrapped.read(0, &mut [0])),
            Some(Err(_))
        ));
        assert_eq!(shm.faults(), 6);
        assert_eq!(complete_now(sub.write(24, &[9; 8])), Some(Ok(())));
        let mut out = [0u8; 8];
        assert_eq!(complete_now(shm.read(24, &mut out)), Some(Ok(())));
        assert_eq!(out, [9; 8]);
    }

    #[test]
    fn jitter_pauses_at_about_one_access_in_n_and_never_changes_values() {
        let mut backing = [0u64; 4];
        let jitter = Arc::new(Jitter::new(7, 8, 100));
        let shm = view(&mut backing).with_jitter(jitter.clone());
        let sub = shm.bounded(0, 16);
        for i in 0..64 {
            assert_eq!(
                complete_now(sub.store_u64(8, i, Ordering::Release)),
                Some(Ok(()))
            );
            assert_eq!(
                complete_now(shm.load_u64(8, Ordering::Acquire)),
                Some(Ok(i))
            );
        }
        let paused = (0..8000).filter(|_| jitter.pause() > 0).count();
        assert!((700..1300).contains(&paused), "{paused} of 8000 paused");
        let off = Jitter::new(7, 0, 100);
        assert!((0..1000).all(|_| off.pause() == 0));
    }
}
