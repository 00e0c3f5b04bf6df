//! The `pipe-tcp` workload: the guest listens and connects through the monitor's TCP relays.
//!
//! External clients connect to the guest's listener; each sends a request, half-closes and reads
//! the guest's response to its end. External servers each accept one connection from the guest,
//! read its request to the end and answer. Sometimes the guest also connects to a port nobody
//! listens on. The guest serves every connection in its own kernel thread: it reads the peer's
//! bytes to their end, then writes its own (in chunks its `choose` picks) and half-closes.
//!
//! The workload records what the guest read and wrote per conversation (`TcpResults`); the
//! external peers record their side, and the oracles compare the two outside the guest.

use crate::echo::{GuestOs, Pipe, bytes_from};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use guest::sync::Latch;
use guest::{ControlClient, PipeError};
use ring_pipe::msg::{ListenerReply, ListenerRequest, PipeInfo, Protocol, StreamReply, Wire, code};

mod wire;

pub use crate::echo::PlanError;

/// The guest's listening port, the first server port, and a port nobody listens on.
pub const LISTEN_PORT: u16 = 8080;
pub const SERVER_PORT: u16 = 7000;
pub const CLOSED_PORT: u16 = 9;
/// Most bytes one direction of a conversation carries.
pub const MAX_BYTES: u64 = 3000;

/// One external peer's conversation with the guest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conversation {
    /// Bytes the peer sends to the guest.
    pub to_guest: u64,
    /// Bytes the guest sends back.
    pub from_guest: u64,
    /// The peer writes in chunks of at most this many bytes.
    pub chunk: u64,
    /// Seeds both payloads.
    pub key: u64,
}

impl Conversation {
    pub fn to_guest_bytes(&self) -> Vec<u8> {
        bytes_from(self.key, self.to_guest as usize)
    }
    pub fn from_guest_bytes(&self) -> Vec<u8> {
        bytes_from(!self.key, self.from_guest as usize)
    }
}

/// The whole workload of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TcpPlan {
    pub clients: usize,
    pub servers: usize,
    /// The guest also connects to `CLOSED_PORT` on the first peer's host.
    pub closed_port_connect: bool,
    /// Ring size asked of the monitor for every pipe.
    pub ring: u64,
    /// The clients' conversations, then the servers'.
    pub conversations: Vec<Conversation>,
}

impl TcpPlan {
    /// Peer `i`'s host name: `client<i>` for the clients, then `server<j>`.
    pub fn name(&self, i: usize) -> String {
        if i < self.clients {
            format!("client{i}")
        } else {
            format!("server{}", i - self.clients)
        }
    }

    /// The conversation index of host `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        (0..self.conversations.len()).find(|&i| self.name(i) == name)
    }
}

/// Derives a plan; `derive(name, lo, hi)` as for `echo::plan` (the names and their order are
/// part of every replay). Returns whether the client count was forced to 1 (a run needs one
/// peer), which the simulation records as an option.
pub fn plan(derive: &mut dyn FnMut(&str, u64, u64) -> u64) -> (TcpPlan, bool) {
    let mut clients = derive("clients", 0, 3) as usize;
    let servers = derive("servers", 0, 2) as usize;
    let forced = clients + servers == 0;
    if forced {
        clients = 1;
    }
    let closed_port_connect = derive("closed_port_connect", 0, 1) == 1;
    let ring = 64 << derive("ring_shift", 0, 4);
    let mut plan = TcpPlan {
        clients,
        servers,
        closed_port_connect,
        ring,
        conversations: Vec::new(),
    };
    for i in 0..clients + servers {
        let name = plan.name(i);
        let to_guest = derive(&format!("{name}_to_guest"), 0, MAX_BYTES);
        let from_guest = derive(&format!("{name}_from_guest"), 0, MAX_BYTES);
        let chunk = derive(&format!("{name}_chunk"), 1, 1500);
        let key = derive(&format!("{name}_key"), 0, u64::from(u32::MAX));
        plan.conversations.push(Conversation {
            to_guest,
            from_guest,
            chunk,
            key,
        });
    }
    (plan, forced)
}

/// What the guest read and wrote, per conversation index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TcpResults {
    pub read: BTreeMap<usize, Vec<u8>>,
    pub wrote: BTreeMap<usize, Vec<u8>>,
    /// What the connect to the closed port got: `Some(true)` if it connected.
    pub closed_port_connected: Option<bool>,
    pub errors: Vec<String>,
}

pub type Shared = Rc<RefCell<TcpResults>>;

/// The guest's side of the run. `choose(n)` picks a value below `n` (the guest's own seeded
/// choices); `listening` is called once the listener is up, if there is one.
pub async fn run<G: GuestOs>(
    os: G,
    control: PipeInfo,
    plan: Rc<TcpPlan>,
    choose: Rc<dyn Fn(u64) -> u64>,
    listening: impl FnOnce(),
    results: Shared,
) {
    let session = Session {
        os,
        plan,
        choose,
        results,
    };
    if let Err(e) = session.main(&control, listening).await {
        session
            .results
            .borrow_mut()
            .errors
            .push(format!("main: {e}"));
    }
}

struct Session<G> {
    os: G,
    plan: Rc<TcpPlan>,
    choose: Rc<dyn Fn(u64) -> u64>,
    results: Shared,
}

impl<G: GuestOs> Clone for Session<G> {
    fn clone(&self) -> Self {
        Self {
            os: self.os.clone(),
            plan: self.plan.clone(),
            choose: self.choose.clone(),
            results: self.results.clone(),
        }
    }
}

impl<G: GuestOs> Session<G> {
    fn error(&self, what: String) {
        self.results.borrow_mut().errors.push(what);
    }

    async fn main(&self, control: &PipeInfo, listening: impl FnOnce()) -> Result<(), PipeError> {
        let plan = &self.plan;
        let mut control = ControlClient::new(self.os.attach(control).await?);
        let mut pipes = Vec::new();
        let outbound = plan.servers + usize::from(plan.closed_port_connect);
        let done = Latch::new((plan.clients + outbound) as u64);
        let mut listener = None;
        if plan.clients > 0 {
            let info = control.new_pipe(plan.ring).await?;
            pipes.push(info.pipe_id);
            let mut pipe = self.os.attach(&info).await?;
            pipe.send_frame(
                &Protocol::TcpListen {
                    port: LISTEN_PORT.into(),
                }
                .encode(),
            )
            .await?;
            match ListenerReply::decode(&recv::<G>(&mut pipe).await?)? {
                ListenerReply::Listening { .. } => listening(),
                ListenerReply::Error { code } => return Err(PipeError::Remote(code)),
                ListenerReply::Incoming { .. } => {
                    return Err(PipeError::Protocol("Incoming answers TcpListen"));
                }
            }
            listener = Some(pipe);
        }
        for i in 0..outbound {
            let info = control.new_pipe(plan.ring).await?;
            pipes.push(info.pipe_id);
            let pipe = self.os.attach(&info).await?;
            let (s, d) = (self.clone(), done.clone());
            self.os.kernel().spawn(&format!("out{i}"), async move {
                let outcome = if i < s.plan.servers {
                    s.outbound(pipe, s.plan.clients + i, SERVER_PORT + i as u16)
                        .await
                } else {
                    s.closed_port(pipe).await
                };
                if let Err(err) = outcome {
                    s.error(format!("outbound {i}: {err}"));
                }
                d.count_down();
            });
        }
        if let Some(listener) = &mut listener {
            for i in 0..plan.clients {
                let info = control.new_pipe(plan.ring).await?;
                pipes.push(info.pipe_id);
                let accept = ListenerRequest::Accept {
                    pipe_id: info.pipe_id,
                };
                listener.send_frame(&accept.encode()).await?;
                let peer = match ListenerReply::decode(&recv::<G>(listener).await?)? {
                    ListenerReply::Incoming { pipe_id, peer } if pipe_id == info.pipe_id => peer,
                    ListenerReply::Incoming { .. } => {
                        return Err(PipeError::Protocol("Incoming names another pipe"));
                    }
                    ListenerReply::Error { code } => return Err(PipeError::Remote(code)),
                    ListenerReply::Listening { .. } => {
                        return Err(PipeError::Protocol("Listening answers Accept"));
                    }
                };
                let pipe = self.os.attach(&info).await?;
                let (s, d) = (self.clone(), done.clone());
                self.os.kernel().spawn(&format!("in{i}"), async move {
                    let name = peer.split(':').next().unwrap_or_default();
                    let outcome = match s.plan.index(name) {
                        Some(index) => s.inbound(pipe, index).await,
                        None => Err(PipeError::Protocol("a connection from an unknown peer")),
                    };
                    if let Err(err) = outcome {
                        s.error(format!("inbound {i}: {err}"));
                    }
                    d.count_down();
                });
            }
        }
        done.wait().await;
        if let Some(mut listener) = listener {
            // Ends the listener; the relay closes its side in turn.
            listener.close_write().await?;
            if listener.recv_frame().await?.is_some() {
                return Err(PipeError::Protocol("frames after the listener closed"));
            }
        }
        for id in pipes {
            control.close_pipe(id).await?;
        }
        control.shutdown().await
    }

    /// Writes conversation `index`'s answer in chosen chunks, recording each chunk once it is in
    /// the ring.
    async fn send(&self, pipe: &mut Pipe<G>, index: usize) -> Result<(), PipeError> {
        let data = self.plan.conversations[index].from_guest_bytes();
        let mut rest = &data[..];
        while !rest.is_empty() {
            let n = (1 + (self.choose)(rest.len() as u64) as usize).min(rest.len());
            pipe.write_all(&rest[..n]).await?;
            self.results
                .borrow_mut()
                .wrote
                .entry(index)
                .or_default()
                .extend_from_slice(&rest[..n]);
            rest = &rest[n..];
        }
        pipe.close_write().await
    }

    /// Reads the stream to its end (including raw bytes that arrived with the reply frame).
    async fn receive(&self, pipe: &mut Pipe<G>, index: usize) -> Result<(), PipeError> {
        let early = pipe.take_buffered();
        self.record_read(index, &early);
        let mut buf = vec![0u8; 512];
        loop {
            let n = pipe.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            self.record_read(index, &buf[..n]);
        }
    }

    fn record_read(&self, index: usize, bytes: &[u8]) {
        self.results
            .borrow_mut()
            .read
            .entry(index)
            .or_default()
            .extend_from_slice(bytes);
    }

    async fn outbound(&self, mut pipe: Pipe<G>, index: usize, port: u16) -> Result<(), PipeError> {
        let connect = Protocol::TcpConnect {
            host: self.plan.name(index),
            port: port.into(),
        };
        pipe.send_frame(&connect.encode()).await?;
        if let Some(code) = stream_reply::<G>(&mut pipe).await? {
            return Err(PipeError::Remote(code));
        }
        // The server reads the guest's bytes to their end, then answers.
        self.send(&mut pipe, index).await?;
        self.receive(&mut pipe, index).await
    }

    async fn inbound(&self, mut pipe: Pipe<G>, index: usize) -> Result<(), PipeError> {
        pipe.send_frame(&Protocol::TcpAccepted.encode()).await?;
        if let Some(code) = stream_reply::<G>(&mut pipe).await? {
            return Err(PipeError::Remote(code));
        }
        // The client sends its request and half-closes; the guest answers after reading it all.
        self.receive(&mut pipe, index).await?;
        self.send(&mut pipe, index).await
    }

    async fn closed_port(&self, mut pipe: Pipe<G>) -> Result<(), PipeError> {
        let connect = Protocol::TcpConnect {
            host: self.plan.name(0),
            port: CLOSED_PORT.into(),
        };
        pipe.send_frame(&connect.encode()).await?;
        let outcome = stream_reply::<G>(&mut pipe).await?;
        self.results.borrow_mut().closed_port_connected = Some(outcome.is_none());
        match outcome {
            Some(code::REFUSED) | None => Ok(()),
            Some(other) => Err(PipeError::Remote(other)),
        }
    }
}

async fn recv<G: GuestOs>(pipe: &mut Pipe<G>) -> Result<Vec<u8>, PipeError> {
    pipe.recv_frame().await?.ok_or(PipeError::UnexpectedEof)
}

/// Reads the host's `StreamReply`; `Ok(None)` if connected, `Some(code)` if it failed.
async fn stream_reply<G: GuestOs>(pipe: &mut Pipe<G>) -> Result<Option<u64>, PipeError> {
    match StreamReply::decode(&recv::<G>(pipe).await?)? {
        StreamReply::Connected => Ok(None),
        StreamReply::Error { code } => Ok(Some(code)),
    }
}
