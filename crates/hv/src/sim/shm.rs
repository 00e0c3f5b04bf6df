//! `ring_pipe::SharedMemory` over a simkit region: every access goes through the memory model
//! and is a scheduling point; out-of-range accesses are faults, never panics.

use ring_pipe::{MemFault, SharedMemory};
use simkit::{MemError, Ordering, Region};
use std::cell::Cell;
use std::rc::Rc;

/// Shared memory seen by one party. A view may be bounded to a window (one pipe's rings, for
/// the relay that owns them): an access outside the window is refused as a fault and counted,
/// so an oracle can tell that a component tried to reach memory it does not own.
#[derive(Clone)]
pub struct SimShm {
    region: Region,
    window: (u64, u64),
    faults: Rc<Cell<u64>>,
}

impl SimShm {
    pub fn new(region: Region) -> Self {
        let len = region.len();
        Self {
            region,
            window: (0, len),
            faults: Rc::default(),
        }
    }

    pub fn region(&self) -> &Region {
        &self.region
    }

    /// The same memory, limited to `[offset, offset + len)`; faults are counted with this view's.
    pub fn bounded(&self, offset: u64, len: u64) -> Self {
        Self {
            region: self.region.clone(),
            window: (offset, offset.saturating_add(len)),
            faults: self.faults.clone(),
        }
    }

    /// Accesses refused so far by this view and every view bounded from it.
    pub fn faults(&self) -> u64 {
        self.faults.get()
    }

    fn check(&self, offset: u64, len: usize) -> Result<(), MemFault> {
        match offset.checked_add(len as u64) {
            Some(end) if offset >= self.window.0 && end <= self.window.1 => Ok(()),
            _ => {
                self.faults.set(self.faults.get() + 1);
                Err(MemFault {
                    offset,
                    len: len as u64,
                })
            }
        }
    }
}

fn fault(e: MemError) -> MemFault {
    match e {
        MemError::OutOfBounds { addr, len, .. } => MemFault { offset: addr, len },
        MemError::BadWidth { width } => MemFault {
            offset: 0,
            len: width as u64,
        },
    }
}

impl SharedMemory for SimShm {
    fn size(&self) -> u64 {
        self.region.len()
    }

    async fn load_u64(&self, offset: u64, order: Ordering) -> Result<u64, MemFault> {
        self.check(offset, 8)?;
        self.region.load_u64(offset, order).await.map_err(fault)
    }

    async fn store_u64(&self, offset: u64, value: u64, order: Ordering) -> Result<(), MemFault> {
        self.check(offset, 8)?;
        self.region
            .store_u64(offset, value, order)
            .await
            .map_err(fault)
    }

    async fn fence(&self, order: Ordering) {
        // A fence through the kernel: the region's context is the running actor's.
        self.region.fence(order).await;
    }

    async fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), MemFault> {
        self.check(offset, buf.len())?;
        self.region.read_bytes(offset, buf).await.map_err(fault)
    }

    async fn write(&self, offset: u64, data: &[u8]) -> Result<(), MemFault> {
        self.check(offset, data.len())?;
        self.region.write_bytes(offset, data).await.map_err(fault)
    }

    fn name_range(&self, offset: u64, len: u64, name: std::fmt::Arguments<'_>) {
        self.region.name_field(offset, len, &name.to_string());
    }
}
