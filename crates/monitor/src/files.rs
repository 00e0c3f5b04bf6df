//! The file seam the file relay serves from: a host directory in hardware runs, an in-memory
//! store with seeded faults in simulation (`scenarios` provides it). Errors are errno codes.

use ring_pipe::msg::Whence;
use std::future::Future;

pub trait FileStore: 'static {
    type Handle: Copy + 'static;

    fn open(&self, path: &str, flags: u64) -> impl Future<Output = Result<Self::Handle, u64>>;
    /// Up to `len` bytes from the current position; fewer (even none) at end of file, or as a
    /// short read.
    fn read(&self, h: Self::Handle, len: u64) -> impl Future<Output = Result<Vec<u8>, u64>>;
    /// Writes a prefix of `data` (possibly short); returns how much.
    fn write(&self, h: Self::Handle, data: &[u8]) -> impl Future<Output = Result<u64, u64>>;
    fn seek(
        &self,
        h: Self::Handle,
        offset: i64,
        whence: Whence,
    ) -> impl Future<Output = Result<u64, u64>>;
    fn close(&self, h: Self::Handle) -> impl Future<Output = ()>;
}
