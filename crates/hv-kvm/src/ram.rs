//! Guest RAM: one anonymous shared mapping, registered with KVM as memory slot 0 at
//! guest-physical 0. The VMM reads and writes it through bounds-checked copies; the monitor
//! reaches the shared region through a [`RawShm`] view that keeps the mapping alive.

use crate::KvmError;
use raw_shm::RawShm;
use std::sync::Arc;

/// The mapping itself; unmapped when the last owner (RAM handle or shared-memory view) drops.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory valid until drop; concurrent access is governed by the
// users (atomics for ring cursors, copies of handed-over bytes), as for any shared memory.
#[allow(unsafe_code)]
unsafe impl Send for Mapping {}
#[allow(unsafe_code)]
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr..ptr+len` is the mapping `GuestRam::new` created, and nothing uses it
        // after the last owner drops.
        #[allow(unsafe_code)]
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

#[derive(Clone)]
pub struct GuestRam {
    map: Arc<Mapping>,
}

impl GuestRam {
    /// Maps `len` bytes of zeroed memory.
    pub fn new(len: usize) -> Result<Self, KvmError> {
        // SAFETY: an anonymous mapping with no address hint has no preconditions; the result is
        // checked.
        #[allow(unsafe_code)]
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_ANONYMOUS | libc::MAP_SHARED | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(KvmError::Os(
                "mmap guest RAM",
                std::io::Error::last_os_error(),
            ));
        }
        Ok(Self {
            map: Arc::new(Mapping {
                ptr: ptr.cast(),
                len,
            }),
        })
    }

    pub fn len(&self) -> usize {
        self.map.len
    }

    pub fn is_empty(&self) -> bool {
        self.map.len == 0
    }

    pub(crate) fn host_address(&self) -> u64 {
        self.map.ptr as u64
    }

    fn range(&self, gpa: u64, len: usize) -> Result<usize, KvmError> {
        match gpa.checked_add(len as u64) {
            Some(end) if end <= self.map.len as u64 => Ok(gpa as usize),
            _ => Err(KvmError::OutOfRam { gpa, len }),
        }
    }

    pub fn write(&self, gpa: u64, data: &[u8]) -> Result<(), KvmError> {
        let at = self.range(gpa, data.len())?;
        // SAFETY: in range of the live mapping (checked above).
        #[allow(unsafe_code)]
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.map.ptr.add(at), data.len());
        }
        Ok(())
    }

    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), KvmError> {
        let at = self.range(gpa, buf.len())?;
        // SAFETY: in range of the live mapping (checked above). The guest may be writing the
        // same bytes; then the copy holds whatever values it saw, which callers treat as
        // untrusted input.
        #[allow(unsafe_code)]
        unsafe {
            std::ptr::copy_nonoverlapping(self.map.ptr.add(at), buf.as_mut_ptr(), buf.len());
        }
        Ok(())
    }

    /// Reads `len` guest bytes at `gpa` into a new vector; `max` bounds what a guest can make
    /// the host allocate.
    pub fn read_vec(&self, gpa: u64, len: u64, max: u64) -> Result<Vec<u8>, KvmError> {
        if len > max {
            return Err(KvmError::OutOfRam {
                gpa,
                len: len as usize,
            });
        }
        let mut buf = vec![0; len as usize];
        self.read(gpa, &mut buf)?;
        Ok(buf)
    }

    pub fn write_u64(&self, gpa: u64, value: u64) -> Result<(), KvmError> {
        self.write(gpa, &value.to_le_bytes())
    }

    /// The 8-aligned word at `gpa` as an atomic, for a counter both sides update (the event
    /// channel's epoch).
    pub fn atomic_u64(&self, gpa: u64) -> Result<&std::sync::atomic::AtomicU64, KvmError> {
        let at = self.range(gpa, 8)?;
        if !gpa.is_multiple_of(8) {
            return Err(KvmError::OutOfRam { gpa, len: 8 });
        }
        // SAFETY: in range of the live mapping (checked), 8-aligned (the mapping is page-aligned
        // and `gpa` is checked), valid while `self` is borrowed; every access to the word by
        // the host goes through this atomic.
        #[allow(unsafe_code)]
        Ok(unsafe { std::sync::atomic::AtomicU64::from_ptr(self.map.ptr.add(at).cast()) })
    }

    /// A shared-memory view of `len` bytes at `gpa`, keeping the mapping alive.
    pub fn shm(&self, gpa: u64, len: u64) -> Result<RawShm, KvmError> {
        let at = self.range(gpa, len as usize)?;
        let owner: Arc<dyn std::any::Any + Send + Sync> = self.map.clone();
        // SAFETY: the range is inside the mapping (checked), and the view owns a reference to
        // the mapping, so it stays mapped as long as the view or its sub-views exist.
        #[allow(unsafe_code)]
        Ok(unsafe { RawShm::new(self.map.ptr.add(at), len, Some(owner)) })
    }
}
