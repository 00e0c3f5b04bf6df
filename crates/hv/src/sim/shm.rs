//! `ring_pipe::SharedMemory` over a simkit region: every access goes through the memory model
//! and is a scheduling point; out-of-range accesses are faults, never panics.

use ring_pipe::{MemFault, SharedMemory};
use simkit::{MemError, Ordering, Region};

#[derive(Clone)]
pub struct SimShm {
    region: Region,
}

impl SimShm {
    pub fn new(region: Region) -> Self {
        Self { region }
    }

    pub fn region(&self) -> &Region {
        &self.region
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
        self.region.load_u64(offset, order).await.map_err(fault)
    }

    async fn store_u64(&self, offset: u64, value: u64, order: Ordering) -> Result<(), MemFault> {
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
        self.region.read_bytes(offset, buf).await.map_err(fault)
    }

    async fn write(&self, offset: u64, data: &[u8]) -> Result<(), MemFault> {
        self.region.write_bytes(offset, data).await.map_err(fault)
    }
}
