//! Echo: every byte the guest writes comes back, until the guest closes its write side.

use crate::Platform;
use crate::host_pipe::{HostPipe, HostPipeError};

pub async fn run<P: Platform>(pipe: &mut HostPipe<P>) -> Result<(), HostPipeError> {
    let early = pipe.take_buffered();
    pipe.write_all(&early).await?;
    let mut buf = [0u8; 1024];
    loop {
        match pipe.read(&mut buf).await? {
            0 => return Ok(()),
            n => pipe.write_all(&buf[..n]).await?,
        }
    }
}
