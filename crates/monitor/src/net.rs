//! The network seam the TCP relays serve from: host sockets in hardware runs, turmoil hosts in
//! simulation (`scenarios` provides that binding), or [`NoNet`] for a host without a network.
//! Errors are errno codes, as the guest sees them on the wire.

use ring_pipe::msg::code;
use std::future::Future;

pub trait Net: Clone + 'static {
    type Listener: 'static;
    type Reader: NetReader;
    type Writer: NetWriter;

    /// Listens on `port` of the host's address.
    fn listen(&self, port: u16) -> impl Future<Output = Result<Self::Listener, u64>>;
    /// The next incoming connection, with its peer's name.
    fn accept(
        &self,
        listener: &Self::Listener,
    ) -> impl Future<Output = Result<Connection<Self>, u64>>;
    fn connect(&self, host: &str, port: u16)
    -> impl Future<Output = Result<Connection<Self>, u64>>;
}

/// An open TCP connection, split into its two directions.
pub struct Connection<N: Net> {
    pub reader: N::Reader,
    pub writer: N::Writer,
    pub peer: String,
}

pub trait NetReader: 'static {
    /// Reads at least one byte; `Ok(0)` at end of stream (the peer half-closed).
    fn read(&mut self, buf: &mut [u8]) -> impl Future<Output = Result<usize, u64>>;
}

pub trait NetWriter: 'static {
    /// Writes a non-empty prefix of `data`; returns how much.
    fn write(&mut self, data: &[u8]) -> impl Future<Output = Result<usize, u64>>;
    /// Half-closes: the peer reads end of stream after everything written.
    fn shutdown(&mut self) -> impl Future<Output = Result<(), u64>>;

    fn write_all(&mut self, mut data: &[u8]) -> impl Future<Output = Result<(), u64>> {
        async move {
            while !data.is_empty() {
                let n = self.write(data).await?;
                if n == 0 || n > data.len() {
                    return Err(code::IO);
                }
                data = &data[n..];
            }
            Ok(())
        }
    }
}

/// A host without a network: every listen and connect is refused.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoNet;

/// The halves of a connection that cannot exist.
pub enum Never {}

impl NetReader for Never {
    async fn read(&mut self, _: &mut [u8]) -> Result<usize, u64> {
        match *self {}
    }
}

impl NetWriter for Never {
    async fn write(&mut self, _: &[u8]) -> Result<usize, u64> {
        match *self {}
    }
    async fn shutdown(&mut self) -> Result<(), u64> {
        match *self {}
    }
}

impl Net for NoNet {
    type Listener = Never;
    type Reader = Never;
    type Writer = Never;

    async fn listen(&self, _: u16) -> Result<Never, u64> {
        Err(code::REFUSED)
    }
    async fn accept(&self, listener: &Never) -> Result<Connection<Self>, u64> {
        match *listener {}
    }
    async fn connect(&self, _: &str, _: u16) -> Result<Connection<Self>, u64> {
        Err(code::REFUSED)
    }
}
