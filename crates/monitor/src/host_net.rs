//! The network seam on real sockets, for hardware runs: tokio TCP on the loopback interface.
//!
//! The guest names peers by host name and port (`server0:7000`), as in the simulation, so the
//! host keeps a small directory: the address each named service really listens on (ephemeral
//! ports, so parallel runs and busy machines never collide), the name behind each local address
//! an external client connects from (so an accepted connection's peer reads `client0:<port>`),
//! and the real address behind each port the guest listens on (external clients look it up).
//! A known host with no service at the asked port is reached on loopback at that very port, so a
//! closed port is refused by the kernel, as anywhere. An unknown host is `NOT_FOUND`.

use crate::net::{Connection, Net, NetReader, NetWriter};
use ring_pipe::msg::code;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct Directory {
    hosts: BTreeSet<String>,
    services: BTreeMap<(String, u16), SocketAddr>,
    clients: BTreeMap<SocketAddr, String>,
    guest_listeners: BTreeMap<u16, SocketAddr>,
}

/// Loopback TCP with a name directory; clones share it.
#[derive(Clone, Default)]
pub struct HostNet {
    directory: Rc<RefCell<Directory>>,
}

/// The errno-style code the guest sees for a socket error.
fn code_of(e: &io::Error) -> u64 {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => code::REFUSED,
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => code::RESET,
        io::ErrorKind::AddrInUse => code::ADDR_IN_USE,
        _ => code::IO,
    }
}

impl HostNet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Host `host` exists (reached on loopback), with no services yet.
    pub fn host(&self, host: &str) {
        self.directory.borrow_mut().hosts.insert(host.to_string());
    }

    /// Host `host` offers a service at `port`, really listening at `addr`.
    pub fn serve(&self, host: &str, port: u16, addr: SocketAddr) {
        let mut d = self.directory.borrow_mut();
        d.hosts.insert(host.to_string());
        d.services.insert((host.to_string(), port), addr);
    }

    /// Host `host` connects from local address `addr` (bind before connecting, so the name is
    /// known before the guest can accept).
    pub fn client(&self, host: &str, addr: SocketAddr) {
        let mut d = self.directory.borrow_mut();
        d.hosts.insert(host.to_string());
        d.clients.insert(addr, host.to_string());
    }

    /// Where the guest's listener on `port` really listens, once it does.
    pub fn guest_listener(&self, port: u16) -> Option<SocketAddr> {
        self.directory.borrow().guest_listeners.get(&port).copied()
    }
}

pub struct HostReader(OwnedReadHalf);
pub struct HostWriter(OwnedWriteHalf);

impl NetReader for HostReader {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, u64> {
        self.0.read(buf).await.map_err(|e| code_of(&e))
    }
}

impl NetWriter for HostWriter {
    async fn write(&mut self, data: &[u8]) -> Result<usize, u64> {
        self.0.write(data).await.map_err(|e| code_of(&e))
    }
    async fn shutdown(&mut self) -> Result<(), u64> {
        self.0.shutdown().await.map_err(|e| code_of(&e))
    }
}

fn split(stream: TcpStream, peer: String) -> Connection<HostNet> {
    let (reader, writer) = stream.into_split();
    Connection {
        reader: HostReader(reader),
        writer: HostWriter(writer),
        peer,
    }
}

impl Net for HostNet {
    type Listener = TcpListener;
    type Reader = HostReader;
    type Writer = HostWriter;

    async fn listen(&self, port: u16) -> Result<TcpListener, u64> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(|e| code_of(&e))?;
        let addr = listener.local_addr().map_err(|e| code_of(&e))?;
        let mut d = self.directory.borrow_mut();
        if d.guest_listeners.contains_key(&port) {
            return Err(code::ADDR_IN_USE);
        }
        d.guest_listeners.insert(port, addr);
        Ok(listener)
    }

    async fn accept(&self, listener: &TcpListener) -> Result<Connection<Self>, u64> {
        let (stream, from) = listener.accept().await.map_err(|e| code_of(&e))?;
        let peer = match self.directory.borrow().clients.get(&from) {
            Some(name) => format!("{name}:{}", from.port()),
            None => from.to_string(),
        };
        Ok(split(stream, peer))
    }

    async fn connect(&self, host: &str, port: u16) -> Result<Connection<Self>, u64> {
        let addr = {
            let d = self.directory.borrow();
            match d.services.get(&(host.to_string(), port)) {
                Some(addr) => *addr,
                None if d.hosts.contains(host) => SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                None => return Err(code::NOT_FOUND),
            }
        };
        let stream = TcpStream::connect(addr).await.map_err(|e| code_of(&e))?;
        Ok(split(stream, format!("{host}:{port}")))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn named_services_clients_and_guest_listeners_resolve_on_loopback() {
        block_on(async {
            let net = HostNet::new();
            let server = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
            net.serve("server0", 7000, server.local_addr().unwrap());
            let (out, accepted) = tokio::join!(net.connect("server0", 7000), server.accept());
            let mut out = out.unwrap();
            let (mut theirs, _) = accepted.unwrap();
            out.writer.write_all(b"hello").await.unwrap();
            out.writer.shutdown().await.unwrap();
            let mut got = Vec::new();
            theirs.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"hello");

            let listener = net.listen(8080).await.unwrap();
            assert_eq!(net.listen(8080).await.err(), Some(code::ADDR_IN_USE));
            let at = net.guest_listener(8080).unwrap();
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind((Ipv4Addr::LOCALHOST, 0).into()).unwrap();
            net.client("client0", socket.local_addr().unwrap());
            let (client, incoming) = tokio::join!(socket.connect(at), net.accept(&listener));
            client.unwrap();
            assert!(incoming.unwrap().peer.starts_with("client0:"));

            assert_eq!(net.connect("nowhere", 1).await.err(), Some(code::NOT_FOUND));
        });
    }

    #[test]
    fn a_known_host_without_the_service_refuses() {
        block_on(async {
            let net = HostNet::new();
            // A port that was just free: nothing listens there now.
            let free = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            let port = free.local_addr().unwrap().port();
            drop(free);
            net.client("client0", SocketAddr::from((Ipv4Addr::LOCALHOST, 1)));
            assert_eq!(
                net.connect("client0", port).await.err(),
                Some(code::REFUSED)
            );
        });
    }
}
