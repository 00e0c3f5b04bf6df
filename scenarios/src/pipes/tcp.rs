//! `pipe-tcp`: the guest listens and connects through the monitor's TCP relays, and turmoil
//! hosts play the external clients and servers, with seeded latency and transient partitions.
//!
//! Workload (derived per seed): 0–3 external clients connect to the guest's listener once it
//! reports `Listening`; each sends a request (0–3000 bytes, in seeded chunks), half-closes and
//! reads the guest's response to its end. 0–2 external servers each accept one connection from
//! the guest, read its request to the end and answer. Sometimes the guest also connects to a
//! port nobody listens on. The guest serves every connection in its own kernel thread: it reads
//! the peer's bytes to their end, then writes its own and half-closes. Faults: everything the
//! pipe world has (scheduling, store buffers, interrupt and doorbell latency, guest timer
//! preemption) plus the network's: segment latency and 0–3 held links that heal later.
//!
//! Oracles: per connection and direction, what one end read is exactly what the other wrote,
//! judged from the peers' and the guest's own records, never from the relays; every external
//! peer sees its connection end; a connect to a closed port is refused; no peer software
//! fails; plus the pipe world's liveness, panic and out-of-bounds checks.

use crate::pipes::files::SimFiles;
use crate::pipes::net::{Activity, GATEWAY, Kick, NetConfig, Network};
use crate::pipes::world::{self, Bugs, GuestEnv, GuestPipe, PipeWorld};
use crate::{PlantedBug, Scenario, Setup, Violation};
use guest::sync::Latch;
use guest::{ControlClient, PipeError};
use guest_programs::echo::bytes_from;
use models::pipes::check_stream;
use monitor::control_pipe_info;
use ring_pipe::msg::{ListenerReply, ListenerRequest, Protocol, StreamReply, Wire, code};
use simkit::{Ctx, KernelOptions};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use turmoil::net::{TcpListener, TcpStream};

pub struct PipeTcp;

const FIN_BEFORE_DRAIN: &str = "pipe-tcp-fin-before-drain";

static BUGS: &[PlantedBug] = &[PlantedBug {
    name: FIN_BEFORE_DRAIN,
    scenario: "pipe-tcp",
    description: "the TCP relay loops while the guest's write side is open, so bytes written just before the close are never forwarded",
    mirrors: "Arca monitor/src/relay.rs pipe_to_tcp (EOF before drain, then the SHM is freed with unread bytes)",
    needs_mem: None,
}];

/// The guest's listening port, the first server port, and a port nobody listens on.
const LISTEN_PORT: u16 = 8080;
const SERVER_PORT: u16 = 7000;
const CLOSED_PORT: u16 = 9;
/// Most bytes one direction of a connection carries.
const MAX_BYTES: u64 = 3000;

/// One external peer's conversation with the guest.
struct Conversation {
    /// What the peer sends to the guest, in chunks of at most `chunk`.
    to_guest: Vec<u8>,
    /// What the guest sends back.
    from_guest: Vec<u8>,
    chunk: usize,
}

/// What each end observably wrote and read, by peer host name.
#[derive(Default)]
struct Record {
    peer_wrote: Vec<u8>,
    guest_read: Vec<u8>,
    guest_wrote: Vec<u8>,
    peer_read: Vec<u8>,
    peer_saw_end: bool,
}

#[derive(Default)]
struct Observed {
    records: BTreeMap<String, Record>,
    errors: Vec<String>,
    /// What the guest's connect to the closed port got: `Some(true)` if it connected.
    closed_port_connected: Option<bool>,
}

type Shared = Rc<RefCell<Observed>>;

struct Hold {
    peer: String,
    after_ns: u64,
    for_ns: u64,
}

impl Scenario for PipeTcp {
    fn name(&self) -> &'static str {
        "pipe-tcp"
    }

    fn description(&self) -> &'static str {
        "the guest listens and connects through the monitor's TCP relays; turmoil clients and servers, segment latency, healing partitions"
    }

    fn expected_steps(&self) -> u64 {
        20_000
    }

    fn kernel_options(&self) -> KernelOptions {
        world::kernel_options()
    }

    fn bugs(&self) -> &'static [PlantedBug] {
        BUGS
    }

    fn run(&self, setup: &mut Setup) -> Vec<Violation> {
        let mut clients = setup.derive("clients", 0, 3) as usize;
        let servers = setup.derive("servers", 0, 2) as usize;
        if clients + servers == 0 {
            clients = 1;
            setup.option("clients_forced", 1);
        }
        let try_closed_port = setup.derive("closed_port_connect", 0, 1) == 1;
        let ring = 64 << setup.derive("ring_shift", 0, 4);
        let mut conversations = BTreeMap::new();
        let names: Vec<String> = (0..clients)
            .map(|i| format!("client{i}"))
            .chain((0..servers).map(|i| format!("server{i}")))
            .collect();
        for name in &names {
            let up = setup.derive(&format!("{name}_to_guest"), 0, MAX_BYTES) as usize;
            let down = setup.derive(&format!("{name}_from_guest"), 0, MAX_BYTES) as usize;
            let chunk = setup.derive(&format!("{name}_chunk"), 1, 1500) as usize;
            let key = setup.derive(&format!("{name}_key"), 0, u64::from(u32::MAX));
            conversations.insert(
                name.clone(),
                Conversation {
                    to_guest: bytes_from(key, up),
                    from_guest: bytes_from(!key, down),
                    chunk,
                },
            );
        }
        let holds: Vec<Hold> = (0..setup.derive("holds", 0, 3))
            .map(|h| Hold {
                peer: names
                    [setup.derive(&format!("hold{h}_peer"), 0, names.len() as u64 - 1) as usize]
                    .clone(),
                after_ns: setup.derive(&format!("hold{h}_after_us"), 0, 600) * 1000,
                for_ns: setup.derive(&format!("hold{h}_for_us"), 20, 800) * 1000,
            })
            .collect();
        let mut bugs = Bugs::default();
        if setup.planted(FIN_BEFORE_DRAIN) {
            bugs.monitor |= monitor::planted::TCP_FIN_BEFORE_DRAIN;
        }
        let config = NetConfig {
            seed: setup.derive("net_seed", 0, u64::MAX),
            tick_ns: 50_000,
            min_latency_ns: 10_000,
            max_latency_ns: 300_000,
            // Every segment carries at least one byte, so no direction sends more segments
            // than MAX_BYTES (see `NetConfig::tcp_capacity`).
            tcp_capacity: 2 * MAX_BYTES as usize,
        };

        let conversations = Rc::new(conversations);
        let observed: Shared = Rc::default();
        let network = Network::new(config);
        let (ready_tx, ready_rx) = watch::channel(false);
        for (name, conv) in conversations.iter() {
            let (ctx, o, a) = (setup.ctx(), observed.clone(), network.activity());
            let (to_guest, chunk) = (conv.to_guest.clone(), conv.chunk);
            let peer = PeerEnv {
                ctx,
                name: name.clone(),
                observed: o,
                activity: a,
            };
            if name.starts_with("client") {
                let ready = ready_rx.clone();
                network.peer(name, async move {
                    external_client(peer, ready, to_guest, chunk).await
                });
            } else {
                let port = SERVER_PORT + name["server".len()..].parse::<u16>().unwrap_or(0);
                network.peer(name, async move {
                    external_server(peer, port, to_guest, chunk).await
                });
            }
        }
        network.start(&setup.ctx());
        start_faults(&setup.ctx(), &network, holds);

        let files = Rc::new(SimFiles::new(setup.ctx()));
        let (o, convs, kick) = (observed.clone(), conversations.clone(), network.kick());
        let plan = GuestPlan {
            clients,
            servers,
            closed_port_host: try_closed_port.then(|| names[0].clone()),
            ring,
        };
        let world = PipeWorld::boot(
            setup,
            256 * 1024,
            bugs,
            files,
            network.net(),
            move |env| async move {
                let ready = Ready { tx: ready_tx, kick };
                if let Err(e) = guest_main(env, plan, convs, ready, o.clone()).await {
                    o.borrow_mut().errors.push(format!("main: {e}"));
                }
            },
        );

        let outcome = setup.sim.run();
        let observed = observed.borrow();
        // Bytes that crossed a ring and the network, end to end, in either direction.
        let delivered: usize = observed
            .records
            .values()
            .map(|r| r.guest_read.len() + r.peer_read.len())
            .sum();
        setup.metric("pipe_bytes", delivered as u64);
        let mut v = world.common_checks(&outcome, &observed.errors);
        for (name, conv) in conversations.iter() {
            let empty = Record::default();
            let r = observed.records.get(name).unwrap_or(&empty);
            v.extend(check_stream(
                &format!("{name} to guest"),
                &r.peer_wrote,
                &r.guest_read,
                false,
            ));
            v.extend(check_stream(
                &format!("guest to {name}"),
                &r.guest_wrote,
                &r.peer_read,
                false,
            ));
            if r.peer_wrote != conv.to_guest {
                v.push(Violation::new(
                    "tcp-peer",
                    format!(
                        "{name} wrote {} of its {} bytes",
                        r.peer_wrote.len(),
                        conv.to_guest.len()
                    ),
                ));
            }
            if !r.peer_saw_end {
                v.push(Violation::new(
                    "tcp-peer",
                    format!("{name} never saw its connection end"),
                ));
            }
        }
        if observed.closed_port_connected == Some(true) {
            v.push(Violation::new(
                "tcp-refused",
                format!("a connect to port {CLOSED_PORT}, where nobody listens, succeeded"),
            ));
        }
        v.extend(
            network
                .errors()
                .into_iter()
                .map(|e| Violation::new("tcp-peer", e)),
        );
        v
    }
}

/// Tells the external clients the guest listens.
struct Ready {
    tx: watch::Sender<bool>,
    kick: Rc<Kick>,
}

impl Ready {
    fn announce(&self) {
        self.tx.send_replace(true);
        self.kick.kick();
    }
}

/// What an external peer's software needs.
struct PeerEnv {
    ctx: Ctx,
    name: String,
    observed: Shared,
    activity: Activity,
}

impl PeerEnv {
    fn record(&self, f: impl FnOnce(&mut Record)) {
        f(self
            .observed
            .borrow_mut()
            .records
            .entry(self.name.clone())
            .or_default());
        self.activity.bump();
    }

    async fn send(&self, stream: &mut TcpStream, data: &[u8], chunk: usize) -> turmoil::Result {
        for piece in data.chunks(chunk.max(1)) {
            stream.write_all(piece).await?;
            self.record(|r| r.peer_wrote.extend_from_slice(piece));
        }
        stream.shutdown().await?;
        self.activity.bump();
        Ok(())
    }

    async fn receive_to_end(&self, stream: &mut TcpStream) -> turmoil::Result {
        let mut buf = vec![0u8; 1024];
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                self.record(|r| r.peer_saw_end = true);
                return Ok(());
            }
            self.record(|r| r.peer_read.extend_from_slice(&buf[..n]));
        }
    }
}

async fn external_client(
    peer: PeerEnv,
    mut ready: watch::Receiver<bool>,
    request: Vec<u8>,
    chunk: usize,
) -> turmoil::Result {
    ready.wait_for(|listening| *listening).await?;
    let mut stream = TcpStream::connect((GATEWAY, LISTEN_PORT)).await?;
    peer.ctx
        .trace("peer-connected", format_args!("{} to guest", peer.name));
    peer.send(&mut stream, &request, chunk).await?;
    peer.receive_to_end(&mut stream).await?;
    peer.ctx.trace("peer-done", format_args!("{}", peer.name));
    Ok(())
}

async fn external_server(
    peer: PeerEnv,
    port: u16,
    response: Vec<u8>,
    chunk: usize,
) -> turmoil::Result {
    let listener = TcpListener::bind(("0.0.0.0", port)).await?;
    let (mut stream, _) = listener.accept().await?;
    peer.ctx
        .trace("peer-accepted", format_args!("{} from guest", peer.name));
    peer.receive_to_end(&mut stream).await?;
    peer.send(&mut stream, &response, chunk).await?;
    peer.ctx.trace("peer-done", format_args!("{}", peer.name));
    Ok(())
}

/// Holds links for a while, then heals them.
fn start_faults(ctx: &Ctx, network: &Rc<Network>, holds: Vec<Hold>) {
    if holds.is_empty() {
        return;
    }
    let (c, network) = (ctx.clone(), network.clone());
    ctx.spawn_daemon("net-faults", async move {
        for hold in holds {
            c.sleep(hold.after_ns).await;
            network.hold(&hold.peer);
            c.trace("net-hold", format_args!("{GATEWAY} <-> {}", hold.peer));
            c.sleep(hold.for_ns).await;
            network.release(&hold.peer);
            c.trace("net-release", format_args!("{GATEWAY} <-> {}", hold.peer));
        }
    });
}

struct GuestPlan {
    clients: usize,
    servers: usize,
    /// A host to try a port nobody listens on, if any.
    closed_port_host: Option<String>,
    ring: u64,
}

async fn guest_main(
    env: GuestEnv,
    plan: GuestPlan,
    conversations: Rc<BTreeMap<String, Conversation>>,
    ready: Ready,
    observed: Shared,
) -> Result<(), PipeError> {
    let mut control = ControlClient::new(env.attach(&control_pipe_info()).await?);
    let mut pipes = Vec::new();
    let sessions = plan.clients + plan.servers + usize::from(plan.closed_port_host.is_some());
    let done = Latch::new(sessions as u64);
    let mut listener = None;
    if plan.clients > 0 {
        let info = control.new_pipe(plan.ring).await?;
        pipes.push(info.pipe_id);
        let mut pipe = env.attach(&info).await?;
        pipe.send_frame(
            &Protocol::TcpListen {
                port: LISTEN_PORT.into(),
            }
            .encode(),
        )
        .await?;
        match ListenerReply::decode(&recv(&mut pipe).await?)? {
            ListenerReply::Listening { .. } => ready.announce(),
            ListenerReply::Error { code } => return Err(PipeError::Remote(code)),
            ListenerReply::Incoming { .. } => {
                return Err(PipeError::Protocol("Incoming answers TcpListen"));
            }
        }
        listener = Some(pipe);
    }
    for i in 0..plan.servers + usize::from(plan.closed_port_host.is_some()) {
        let info = control.new_pipe(plan.ring).await?;
        pipes.push(info.pipe_id);
        let pipe = env.attach(&info).await?;
        let (e, o, d, convs) = (
            env.clone(),
            observed.clone(),
            done.clone(),
            conversations.clone(),
        );
        let closed_host = plan.closed_port_host.clone().unwrap_or_default();
        let servers = plan.servers;
        env.kernel.spawn(&format!("out{i}"), async move {
            let outcome = if i < servers {
                let name = format!("server{i}");
                let port = SERVER_PORT + i as u16;
                match convs.get(&name) {
                    Some(conv) => outbound(&e, pipe, &name, port, conv, &o).await,
                    None => Err(PipeError::Protocol("no conversation for a server")),
                }
            } else {
                closed_port(pipe, &closed_host, &o).await
            };
            if let Err(err) = outcome {
                o.borrow_mut().errors.push(format!("outbound {i}: {err}"));
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
            let peer = match ListenerReply::decode(&recv(listener).await?)? {
                ListenerReply::Incoming { pipe_id, peer } if pipe_id == info.pipe_id => peer,
                ListenerReply::Incoming { .. } => {
                    return Err(PipeError::Protocol("Incoming names another pipe"));
                }
                ListenerReply::Error { code } => return Err(PipeError::Remote(code)),
                ListenerReply::Listening { .. } => {
                    return Err(PipeError::Protocol("Listening answers Accept"));
                }
            };
            let pipe = env.attach(&info).await?;
            let (e, o, d, convs) = (
                env.clone(),
                observed.clone(),
                done.clone(),
                conversations.clone(),
            );
            env.kernel.spawn(&format!("in{i}"), async move {
                let name = peer.split(':').next().unwrap_or_default().to_string();
                let outcome = match convs.get(&name) {
                    Some(conv) => inbound(&e, pipe, &name, conv, &o).await,
                    None => Err(PipeError::Protocol("a connection from an unknown peer")),
                };
                if let Err(err) = outcome {
                    o.borrow_mut().errors.push(format!("inbound {i}: {err}"));
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

async fn recv(pipe: &mut GuestPipe) -> Result<Vec<u8>, PipeError> {
    pipe.recv_frame().await?.ok_or(PipeError::UnexpectedEof)
}

/// Reads the host's `StreamReply`; `Ok(None)` if the connection failed with a code.
async fn stream_reply(pipe: &mut GuestPipe) -> Result<Option<u64>, PipeError> {
    match StreamReply::decode(&recv(pipe).await?)? {
        StreamReply::Connected => Ok(None),
        StreamReply::Error { code } => Ok(Some(code)),
    }
}

fn record(observed: &Shared, name: &str, f: impl FnOnce(&mut Record)) {
    f(observed
        .borrow_mut()
        .records
        .entry(name.to_string())
        .or_default());
}

/// Writes `data` in seeded chunks, recording each chunk once it is in the ring.
async fn guest_send(
    env: &GuestEnv,
    pipe: &mut GuestPipe,
    name: &str,
    data: &[u8],
    observed: &Shared,
) -> Result<(), PipeError> {
    let mut rest = data;
    while !rest.is_empty() {
        let n = (1 + env.ctx.choose(rest.len() as u64) as usize).min(rest.len());
        pipe.write_all(&rest[..n]).await?;
        record(observed, name, |r| {
            r.guest_wrote.extend_from_slice(&rest[..n])
        });
        rest = &rest[n..];
    }
    pipe.close_write().await
}

/// Reads the stream to its end (including raw bytes that arrived with the reply frame).
async fn guest_receive(
    pipe: &mut GuestPipe,
    name: &str,
    observed: &Shared,
) -> Result<(), PipeError> {
    let early = pipe.take_buffered();
    record(observed, name, |r| r.guest_read.extend_from_slice(&early));
    let mut buf = vec![0u8; 512];
    loop {
        let n = pipe.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        record(observed, name, |r| {
            r.guest_read.extend_from_slice(&buf[..n])
        });
    }
}

async fn outbound(
    env: &GuestEnv,
    mut pipe: GuestPipe,
    name: &str,
    port: u16,
    conv: &Conversation,
    observed: &Shared,
) -> Result<(), PipeError> {
    let connect = Protocol::TcpConnect {
        host: name.to_string(),
        port: port.into(),
    };
    pipe.send_frame(&connect.encode()).await?;
    if let Some(code) = stream_reply(&mut pipe).await? {
        return Err(PipeError::Remote(code));
    }
    // The server reads the guest's bytes to their end, then answers.
    guest_send(env, &mut pipe, name, &conv.from_guest, observed).await?;
    guest_receive(&mut pipe, name, observed).await
}

async fn inbound(
    env: &GuestEnv,
    mut pipe: GuestPipe,
    name: &str,
    conv: &Conversation,
    observed: &Shared,
) -> Result<(), PipeError> {
    pipe.send_frame(&Protocol::TcpAccepted.encode()).await?;
    if let Some(code) = stream_reply(&mut pipe).await? {
        return Err(PipeError::Remote(code));
    }
    // The client sends its request and half-closes; the guest answers after reading it all.
    guest_receive(&mut pipe, name, observed).await?;
    guest_send(env, &mut pipe, name, &conv.from_guest, observed).await
}

async fn closed_port(mut pipe: GuestPipe, host: &str, observed: &Shared) -> Result<(), PipeError> {
    let connect = Protocol::TcpConnect {
        host: host.to_string(),
        port: CLOSED_PORT.into(),
    };
    pipe.send_frame(&connect.encode()).await?;
    let outcome = stream_reply(&mut pipe).await?;
    observed.borrow_mut().closed_port_connected = Some(outcome.is_none());
    match outcome {
        Some(code::REFUSED) | None => Ok(()),
        Some(other) => Err(PipeError::Remote(other)),
    }
}
