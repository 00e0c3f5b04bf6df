//! The shared-memory seam. Offsets are relative to the start of the shared region; every
//! access reports a fault instead of touching memory outside it. Each method is async so that
//! the simulated binding can make it a scheduling point; a hardware binding completes at once.

use core::future::Future;
use core::sync::atomic::Ordering;

/// An access outside the shared region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemFault {
    pub offset: u64,
    pub len: u64,
}

impl core::error::Error for MemFault {}

impl core::fmt::Display for MemFault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "shared-memory access of {} bytes at offset {:#x} is out of bounds",
            self.len, self.offset
        )
    }
}

pub trait SharedMemory {
    /// Size of the region in bytes.
    fn size(&self) -> u64;

    fn load_u64(&self, offset: u64, order: Ordering)
    -> impl Future<Output = Result<u64, MemFault>>;

    fn store_u64(
        &self,
        offset: u64,
        value: u64,
        order: Ordering,
    ) -> impl Future<Output = Result<(), MemFault>>;

    fn fence(&self, order: Ordering) -> impl Future<Output = ()>;

    /// Plain (non-atomic) copy out of the region.
    fn read(&self, offset: u64, buf: &mut [u8]) -> impl Future<Output = Result<(), MemFault>>;

    /// Plain (non-atomic) copy into the region.
    fn write(&self, offset: u64, data: &[u8]) -> impl Future<Output = Result<(), MemFault>>;

    /// Names `[offset, offset + len)` (a ring header field, a data area) for whoever watches
    /// the accesses: the simulation's trace lines show the name instead of an offset. Nothing
    /// else depends on it, so a binding without a trace ignores it.
    fn name_range(&self, _offset: u64, _len: u64, _name: core::fmt::Arguments<'_>) {}
}

impl<M: SharedMemory> SharedMemory for &M {
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn load_u64(
        &self,
        offset: u64,
        order: Ordering,
    ) -> impl Future<Output = Result<u64, MemFault>> {
        (**self).load_u64(offset, order)
    }
    fn store_u64(
        &self,
        offset: u64,
        value: u64,
        order: Ordering,
    ) -> impl Future<Output = Result<(), MemFault>> {
        (**self).store_u64(offset, value, order)
    }
    fn fence(&self, order: Ordering) -> impl Future<Output = ()> {
        (**self).fence(order)
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> impl Future<Output = Result<(), MemFault>> {
        (**self).read(offset, buf)
    }
    fn write(&self, offset: u64, data: &[u8]) -> impl Future<Output = Result<(), MemFault>> {
        (**self).write(offset, data)
    }
    fn name_range(&self, offset: u64, len: u64, name: core::fmt::Arguments<'_>) {
        (**self).name_range(offset, len, name)
    }
}

/// Shared memory as a plain byte vector, for host-side tests and single-threaded tools: every
/// access completes at once, orderings are trivially satisfied, and bounds are checked.
pub struct LocalMemory {
    bytes: core::cell::RefCell<alloc::vec::Vec<u8>>,
}

impl LocalMemory {
    pub fn new(size: usize) -> Self {
        Self {
            bytes: core::cell::RefCell::new(alloc::vec![0; size]),
        }
    }

    fn range(&self, offset: u64, len: usize) -> Result<core::ops::Range<usize>, MemFault> {
        let size = self.bytes.borrow().len() as u64;
        match offset.checked_add(len as u64) {
            Some(end) if end <= size => Ok(offset as usize..end as usize),
            _ => Err(MemFault {
                offset,
                len: len as u64,
            }),
        }
    }

    /// The region size, usable before any async call.
    pub fn size_hint(&self) -> u64 {
        self.bytes.borrow().len() as u64
    }

    /// Direct access for a test acting as a hostile peer.
    pub fn poke_u64(&self, offset: u64, value: u64) -> Result<(), MemFault> {
        let r = self.range(offset, 8)?;
        self.bytes.borrow_mut()[r].copy_from_slice(&value.to_le_bytes());
        Ok(())
    }
}

impl SharedMemory for LocalMemory {
    fn size(&self) -> u64 {
        self.bytes.borrow().len() as u64
    }

    async fn load_u64(&self, offset: u64, _order: Ordering) -> Result<u64, MemFault> {
        let r = self.range(offset, 8)?;
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&self.bytes.borrow()[r]);
        Ok(u64::from_le_bytes(raw))
    }

    async fn store_u64(&self, offset: u64, value: u64, _order: Ordering) -> Result<(), MemFault> {
        self.poke_u64(offset, value)
    }

    async fn fence(&self, _order: Ordering) {}

    async fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), MemFault> {
        let r = self.range(offset, buf.len())?;
        buf.copy_from_slice(&self.bytes.borrow()[r]);
        Ok(())
    }

    async fn write(&self, offset: u64, data: &[u8]) -> Result<(), MemFault> {
        let r = self.range(offset, data.len())?;
        self.bytes.borrow_mut()[r].copy_from_slice(data);
        Ok(())
    }
}

/// Runs a future that completes without waiting (all `LocalMemory` operations do).
pub fn complete_now<F: Future>(fut: F) -> Option<F::Output> {
    let mut fut = core::pin::pin!(fut);
    let mut cx = core::task::Context::from_waker(core::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        core::task::Poll::Ready(v) => Some(v),
        core::task::Poll::Pending => None,
    }
}
