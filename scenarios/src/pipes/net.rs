//! The external network of `pipe-tcp`: turmoil hosts (the clients and servers the guest talks
//! to, and a gateway host that owns the monitor's sockets), stepped from a simkit actor.
//!
//! Model: turmoil runs each host on its own paused-clock tokio runtime and moves TCP segments
//! over links with latency; `Sim::step` advances every host and link by one tick. The monitor's
//! relays run on simkit actors and cannot touch turmoil sockets directly (those need the host's
//! context), so [`SimNet`] hands each request to the gateway host over tokio channels, and each
//! connection is bridged by two pump tasks on the gateway: socket-to-relay and relay-to-socket,
//! over bounded channels, so a slow guest applies backpressure down to the TCP window. Channels
//! wake the other side's waker directly; both executors live on this one thread.
//!
//! The stepper is a daemon actor: one turmoil step per tick of simulated time while anything
//! moves (host activity, segments in flight, a kick from the relays), parking once the network
//! is idle so that a stuck guest still reaches quiescence and the liveness oracles can speak.
//!
//! Faults: seeded segment latency (turmoil's RNG, seeded from the decision source), and
//! transient partitions: a link is held (segments queue, none delivered) for a seeded time, then
//! released. Segments are never dropped: turmoil's TCP has no retransmission, so a dropped
//! segment would be a lost byte that real TCP recovers; holding models a partition that heals
//! within the retransmission window. Connects to a port nobody listens on are refused.

use monitor::net::{Connection, Net, NetReader, NetWriter};
use ring_pipe::msg::code;
use simkit::Ctx;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::{Future, poll_fn};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use turmoil::net::{TcpListener, TcpStream};

/// The gateway's host name: the address external peers reach the guest at.
pub const GATEWAY: &str = "vm";
/// Chunks in flight between a relay and a pump, per direction (the bridge's socket buffer).
const BRIDGE_WINDOW: usize = 4;
const CHUNK: usize = 1024;
/// Steps with nothing moving before the stepper parks.
const IDLE_STEPS: u32 = 3;

/// Wakes the stepper when a relay hands the network something to do.
#[derive(Default)]
pub struct Kick {
    pending: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Kick {
    pub fn kick(&self) {
        self.pending.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    fn take(&self) -> bool {
        self.pending.replace(false)
    }

    async fn wait(&self) {
        poll_fn(|cx| {
            if self.take() {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// Counts observable work on the turmoil side (a busy network is not idle).
#[derive(Clone, Default)]
pub struct Activity(Rc<Cell<u64>>);

impl Activity {
    pub fn bump(&self) {
        self.0.set(self.0.get() + 1);
    }
    fn get(&self) -> u64 {
        self.0.get()
    }
}

enum Command {
    Listen {
        port: u16,
        reply: oneshot::Sender<Result<u64, u64>>,
    },
    Unlisten {
        listener: u64,
    },
    Accept {
        listener: u64,
        reply: oneshot::Sender<Result<Bridged, u64>>,
    },
    Connect {
        host: String,
        port: u16,
        reply: oneshot::Sender<Result<Bridged, u64>>,
    },
}

/// The relay's side of a bridged connection.
struct Bridged {
    incoming: mpsc::Receiver<Result<Vec<u8>, u64>>,
    outgoing: mpsc::Sender<Vec<u8>>,
    peer: String,
}

struct Shared {
    commands: mpsc::UnboundedSender<Command>,
    kick: Rc<Kick>,
}

impl Shared {
    fn send(&self, command: Command) -> Result<(), u64> {
        let sent = self.commands.send(command).map_err(|_| code::IO);
        self.kick.kick();
        sent
    }
}

/// The monitor's network in simulation: requests go to the gateway host. `SimNet::none()` is a
/// host without a network (every listen and connect is refused).
#[derive(Clone, Default)]
pub struct SimNet {
    shared: Option<Rc<Shared>>,
}

impl SimNet {
    pub fn none() -> Self {
        Self::default()
    }

    fn shared(&self) -> Result<&Rc<Shared>, u64> {
        self.shared.as_ref().ok_or(code::REFUSED)
    }

    fn connection(shared: &Rc<Shared>, b: Bridged) -> Connection<SimNet> {
        Connection {
            reader: SimReader {
                incoming: b.incoming,
                pending: Vec::new(),
                at: 0,
                kick: shared.kick.clone(),
            },
            writer: SimWriter {
                outgoing: Some(b.outgoing),
                kick: shared.kick.clone(),
            },
            peer: b.peer,
        }
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, u64>>) -> Command,
    ) -> Result<T, u64> {
        let shared = self.shared()?;
        let (reply, answer) = oneshot::channel();
        shared.send(command(reply))?;
        // The gateway drops the sender unanswered only when the network is torn down.
        answer.await.unwrap_or(Err(code::IO))
    }
}

pub struct SimListener {
    id: u64,
    shared: Rc<Shared>,
}

impl Drop for SimListener {
    fn drop(&mut self) {
        let _ = self.shared.send(Command::Unlisten { listener: self.id });
    }
}

pub struct SimReader {
    incoming: mpsc::Receiver<Result<Vec<u8>, u64>>,
    pending: Vec<u8>,
    at: usize,
    kick: Rc<Kick>,
}

impl NetReader for SimReader {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, u64> {
        if self.at == self.pending.len() {
            let next = self.incoming.recv().await;
            // Taking a chunk frees window for the pump.
            self.kick.kick();
            match next {
                None => return Ok(0),
                Some(Err(code)) => return Err(code),
                Some(Ok(chunk)) => {
                    self.pending = chunk;
                    self.at = 0;
                }
            }
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Drop for SimReader {
    fn drop(&mut self) {
        self.kick.kick();
    }
}

pub struct SimWriter {
    outgoing: Option<mpsc::Sender<Vec<u8>>>,
    kick: Rc<Kick>,
}

impl NetWriter for SimWriter {
    async fn write(&mut self, data: &[u8]) -> Result<usize, u64> {
        let Some(tx) = &self.outgoing else {
            return Err(code::INVALID);
        };
        let n = data.len().min(CHUNK);
        let sent = tx.send(data[..n].to_vec()).await;
        self.kick.kick();
        sent.map(|()| n).map_err(|_| code::RESET)
    }

    async fn shutdown(&mut self) -> Result<(), u64> {
        // Dropping the sender is the half-close: the pump shuts the socket's write side.
        self.outgoing = None;
        self.kick.kick();
        Ok(())
    }
}

impl Drop for SimWriter {
    fn drop(&mut self) {
        self.kick.kick();
    }
}

impl Net for SimNet {
    type Listener = SimListener;
    type Reader = SimReader;
    type Writer = SimWriter;

    async fn listen(&self, port: u16) -> Result<SimListener, u64> {
        let id = self.ask(|reply| Command::Listen { port, reply }).await?;
        let shared = self.shared()?.clone();
        Ok(SimListener { id, shared })
    }

    async fn accept(&self, listener: &SimListener) -> Result<Connection<SimNet>, u64> {
        let id = listener.id;
        let b = self
            .ask(|reply| Command::Accept {
                listener: id,
                reply,
            })
            .await?;
        Ok(Self::connection(self.shared()?, b))
    }

    async fn connect(&self, host: &str, port: u16) -> Result<Connection<SimNet>, u64> {
        let host = host.to_string();
        let b = self
            .ask(|reply| Command::Connect { host, port, reply })
            .await?;
        Ok(Self::connection(self.shared()?, b))
    }
}

fn errno(e: &io::Error) -> u64 {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => code::REFUSED,
        io::ErrorKind::AddrInUse => code::ADDR_IN_USE,
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => code::RESET,
        io::ErrorKind::InvalidInput => code::INVALID,
        _ => code::IO,
    }
}

/// `host:port` of a socket address, by turmoil's reverse DNS.
pub fn peer_name(addr: SocketAddr) -> String {
    let host = turmoil::reverse_lookup(addr.ip()).unwrap_or_else(|| addr.ip().to_string());
    format!("{host}:{}", addr.port())
}

/// The gateway host's software: serves the relays' requests on turmoil sockets.
async fn gateway(
    mut commands: mpsc::UnboundedReceiver<Command>,
    activity: Activity,
) -> turmoil::Result {
    let mut listeners: BTreeMap<u64, Rc<TcpListener>> = BTreeMap::new();
    let mut next_listener = 1u64;
    while let Some(command) = commands.recv().await {
        activity.bump();
        match command {
            Command::Listen { port, reply } => {
                let bound =
                    TcpListener::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port))
                        .await;
                let answer = match bound {
                    Ok(l) => {
                        let id = next_listener;
                        next_listener += 1;
                        listeners.insert(id, Rc::new(l));
                        Ok(id)
                    }
                    Err(e) => Err(errno(&e)),
                };
                let _ = reply.send(answer);
            }
            Command::Unlisten { listener } => {
                listeners.remove(&listener);
            }
            Command::Accept { listener, reply } => {
                let Some(l) = listeners.get(&listener).cloned() else {
                    let _ = reply.send(Err(code::BAD_ID));
                    continue;
                };
                let activity = activity.clone();
                tokio::task::spawn_local(async move {
                    let answer = match l.accept().await {
                        Ok((stream, addr)) => Ok(bridge(stream, peer_name(addr), &activity)),
                        Err(e) => Err(errno(&e)),
                    };
                    activity.bump();
                    let _ = reply.send(answer);
                });
            }
            Command::Connect { host, port, reply } => {
                let activity = activity.clone();
                tokio::task::spawn_local(async move {
                    let answer = match TcpStream::connect((host.as_str(), port)).await {
                        Ok(stream) => Ok(bridge(stream, format!("{host}:{port}"), &activity)),
                        Err(e) => Err(errno(&e)),
                    };
                    activity.bump();
                    let _ = reply.send(answer);
                });
            }
        }
    }
    Ok(())
}

/// Starts the two pumps of a connection on the gateway.
fn bridge(stream: TcpStream, peer: String, activity: &Activity) -> Bridged {
    let (mut from_socket, mut to_socket) = stream.into_split();
    let (in_tx, incoming) = mpsc::channel::<Result<Vec<u8>, u64>>(BRIDGE_WINDOW);
    let (outgoing, mut out_rx) = mpsc::channel::<Vec<u8>>(BRIDGE_WINDOW);
    let a = activity.clone();
    tokio::task::spawn_local(async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let read = from_socket.read(&mut buf).await;
            a.bump();
            let item = match read {
                // End of stream: dropping the sender tells the relay.
                Ok(0) => break,
                Ok(n) => Ok(buf[..n].to_vec()),
                Err(e) => Err(errno(&e)),
            };
            let failed = item.is_err();
            // A relay that stopped reading drops the receiver; so does the socket (a reset if
            // bytes were left unread, as a real close with unread data does).
            if in_tx.send(item).await.is_err() || failed {
                break;
            }
        }
    });
    let a = activity.clone();
    tokio::task::spawn_local(async move {
        while let Some(chunk) = out_rx.recv().await {
            a.bump();
            if to_socket.write_all(&chunk).await.is_err() {
                // Dropping the receiver makes the relay's next write fail with a reset.
                return;
            }
        }
        a.bump();
        let _ = to_socket.shutdown().await;
    });
    Bridged {
        incoming,
        outgoing,
        peer,
    }
}

/// Tuning of the simulated network.
#[derive(Clone, Copy, Debug)]
pub struct NetConfig {
    /// Seed of turmoil's own RNG (segment latencies); drawn from the decision source.
    pub seed: u64,
    pub tick_ns: u64,
    pub min_latency_ns: u64,
    pub max_latency_ns: u64,
    /// Segments a TCP receiver buffers (and a sender may have unread). Keep it above the most
    /// segments one direction of a connection sends: turmoil 0.7.2 parks a FIN that arrives at
    /// a full receive channel in its reorder buffer, which it drains only when a later segment
    /// arrives, so the reader never sees the end of the stream (found by `pipe-tcp` seed 766).
    pub tcp_capacity: usize,
}

/// The turmoil simulation and what the stepper needs to drive it.
pub struct Network {
    sim: RefCell<turmoil::Sim<'static>>,
    kick: Rc<Kick>,
    activity: Activity,
    config: NetConfig,
    /// Host software that ended with an error (an oracle reports them).
    errors: Rc<RefCell<Vec<String>>>,
    gateway_commands: RefCell<Option<mpsc::UnboundedReceiver<Command>>>,
    net: SimNet,
}

impl Network {
    pub fn new(config: NetConfig) -> Rc<Self> {
        let sim = turmoil::Builder::new()
            .rng_seed(config.seed)
            .epoch(std::time::UNIX_EPOCH)
            .tick_duration(Duration::from_nanos(config.tick_ns))
            .min_message_latency(Duration::from_nanos(config.min_latency_ns))
            .max_message_latency(Duration::from_nanos(config.max_latency_ns))
            .simulation_duration(Duration::from_secs(3600))
            .tcp_capacity(config.tcp_capacity)
            .build();
        let (commands, rx) = mpsc::unbounded_channel();
        let kick = Rc::new(Kick::default());
        let net = SimNet {
            shared: Some(Rc::new(Shared {
                commands,
                kick: kick.clone(),
            })),
        };
        Rc::new(Self {
            sim: RefCell::new(sim),
            kick,
            activity: Activity::default(),
            config,
            errors: Rc::default(),
            gateway_commands: RefCell::new(Some(rx)),
            net,
        })
    }

    /// The monitor's side of the network.
    pub fn net(&self) -> SimNet {
        self.net.clone()
    }

    pub fn activity(&self) -> Activity {
        self.activity.clone()
    }

    pub fn kick(&self) -> Rc<Kick> {
        self.kick.clone()
    }

    /// Registers an external peer (a turmoil host running `software` once). Register peers
    /// before [`Network::start`], so that they are ticked before the gateway in every step.
    pub fn peer<Fut>(&self, name: &str, software: Fut)
    where
        Fut: Future<Output = turmoil::Result> + 'static,
    {
        let once = RefCell::new(Some(software));
        let (errors, who) = (self.errors.clone(), name.to_string());
        self.sim.borrow_mut().host(name, move || {
            let software = once.borrow_mut().take();
            let (errors, who) = (errors.clone(), who.clone());
            async move {
                if let Some(software) = software
                    && let Err(e) = software.await
                {
                    errors.borrow_mut().push(format!("{who}: {e}"));
                }
                // The host stays up once its program is done, as a real one does: its stack
                // still refuses connects to closed ports. (turmoil delivers segments only to
                // hosts whose software runs; a finished one would leave a connect hanging.)
                std::future::pending::<()>().await;
                Ok(())
            }
        });
    }

    /// Host software errors so far.
    pub fn errors(&self) -> Vec<String> {
        self.errors.borrow().clone()
    }

    /// Holds every segment between the gateway and `peer` (a partition that will heal).
    pub fn hold(&self, peer: &str) {
        self.sim.borrow().hold(GATEWAY, peer);
        self.kick.kick();
    }

    /// Heals a held link; held segments are delivered.
    pub fn release(&self, peer: &str) {
        self.sim.borrow().release(GATEWAY, peer);
        self.kick.kick();
    }

    fn in_flight(&self) -> usize {
        let mut n = 0;
        self.sim.borrow().links(|links| {
            for link in links {
                n += link.count();
            }
        });
        n
    }

    /// Adds the gateway host and starts the stepper daemon.
    pub fn start(self: &Rc<Self>, ctx: &Ctx) {
        let commands = self.gateway_commands.borrow_mut().take();
        let activity = self.activity.clone();
        let once = RefCell::new(commands);
        self.sim.borrow_mut().host(GATEWAY, move || {
            let commands = once.borrow_mut().take();
            let activity = activity.clone();
            async move {
                match commands {
                    Some(c) => gateway(c, activity).await,
                    None => Ok(()),
                }
            }
        });
        let (network, step_ctx) = (self.clone(), ctx.clone());
        ctx.spawn_daemon("net", async move { network.step_loop(&step_ctx).await });
    }

    async fn step_loop(&self, ctx: &Ctx) {
        let mut idle = 0;
        loop {
            let before = self.activity.get();
            let kicked = self.kick.take();
            let stepped = self.sim.borrow_mut().step();
            if let Err(e) = stepped {
                self.errors.borrow_mut().push(format!("network: {e}"));
                ctx.trace("net-error", format_args!("{e}"));
                return;
            }
            let moving = self.activity.get() != before || self.in_flight() > 0;
            if moving || kicked || self.kick.take() {
                ctx.progress();
                idle = 0;
            } else {
                idle += 1;
            }
            if idle >= IDLE_STEPS {
                self.kick.wait().await;
                idle = 0;
            } else {
                ctx.sleep(self.config.tick_ns).await;
            }
        }
    }
}
