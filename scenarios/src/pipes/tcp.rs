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
use crate::pipes::world::{self, Bugs};
use crate::{PlantedBug, Scenario, Setup, Violation};
use guest_programs::tcp::{
    self, CLOSED_PORT, LISTEN_PORT, MAX_BYTES, SERVER_PORT, TcpPlan, TcpResults,
};
use models::pipes::check_stream;
use monitor::control_pipe_info;
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

/// What an external peer observably wrote and read.
#[derive(Default, Clone, Debug)]
pub struct PeerRecord {
    pub wrote: Vec<u8>,
    pub read: Vec<u8>,
    pub saw_end: bool,
}

/// The external peers' records, by host name.
pub type PeerRecords = Rc<RefCell<BTreeMap<String, PeerRecord>>>;

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
        let (plan, forced) = tcp::plan(&mut |name, lo, hi| setup.derive(name, lo, hi));
        if forced {
            setup.option("clients_forced", 1);
        }
        let names: Vec<String> = (0..plan.conversations.len())
            .map(|i| plan.name(i))
            .collect();
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

        let plan = Rc::new(plan);
        let peers: PeerRecords = Rc::default();
        let guest: tcp::Shared = Rc::default();
        let network = Network::new(config);
        let (ready_tx, ready_rx) = watch::channel(false);
        for (i, conv) in plan.conversations.iter().enumerate() {
            let name = plan.name(i);
            let peer = PeerEnv {
                ctx: setup.ctx(),
                name: name.clone(),
                records: peers.clone(),
                activity: network.activity(),
            };
            let (to_guest, chunk) = (conv.to_guest_bytes(), conv.chunk as usize);
            if i < plan.clients {
                let ready = ready_rx.clone();
                network.peer(&name, async move {
                    external_client(peer, ready, to_guest, chunk).await
                });
            } else {
                let port = SERVER_PORT + (i - plan.clients) as u16;
                network.peer(&name, async move {
                    external_server(peer, port, to_guest, chunk).await
                });
            }
        }
        network.start(&setup.ctx());
        start_faults(&setup.ctx(), &network, holds);

        let files = Rc::new(SimFiles::new(setup.ctx()));
        let (g, p, kick) = (guest.clone(), plan.clone(), network.kick());
        let world = world::PipeWorld::boot(
            setup,
            256 * 1024,
            bugs,
            files,
            network.net(),
            move |env| async move {
                let ready = Ready { tx: ready_tx, kick };
                let ctx = env.ctx.clone();
                let choose: Rc<dyn Fn(u64) -> u64> = Rc::new(move |n| ctx.choose(n));
                tcp::run(env, control_pipe_info(), p, choose, || ready.announce(), g).await;
            },
        );

        setup.run();
        let guest = guest.borrow();
        let peers = peers.borrow();
        // Bytes that crossed a ring and the network, end to end, in either direction.
        let delivered: usize = guest.read.values().map(Vec::len).sum::<usize>()
            + peers.values().map(|r| r.read.len()).sum::<usize>();
        setup.metric("pipe_bytes", delivered as u64);
        let mut v = world.common_checks(&guest.errors);
        v.extend(judge_tcp(&plan, &guest, &peers));
        v.extend(
            network
                .errors()
                .into_iter()
                .map(|e| Violation::new("tcp-peer", e)),
        );
        v
    }
}

/// The pipe-tcp oracles over what the guest and the external peers recorded (shared with the
/// hardware run): per conversation and direction, what one end read is exactly what the other
/// wrote; every peer wrote all it meant to and saw its connection end; a connect to a closed
/// port was refused.
pub fn judge_tcp(
    plan: &TcpPlan,
    guest: &TcpResults,
    peers: &BTreeMap<String, PeerRecord>,
) -> Vec<Violation> {
    let mut v = Vec::new();
    let none = Vec::new();
    for (i, conv) in plan.conversations.iter().enumerate() {
        let name = plan.name(i);
        let empty = PeerRecord::default();
        let peer = peers.get(&name).unwrap_or(&empty);
        let guest_read = guest.read.get(&i).unwrap_or(&none);
        let guest_wrote = guest.wrote.get(&i).unwrap_or(&none);
        v.extend(check_stream(
            &format!("{name} to guest"),
            &peer.wrote,
            guest_read,
            false,
        ));
        v.extend(check_stream(
            &format!("guest to {name}"),
            guest_wrote,
            &peer.read,
            false,
        ));
        if peer.wrote.len() as u64 != conv.to_guest || peer.wrote != conv.to_guest_bytes() {
            v.push(Violation::new(
                "tcp-peer",
                format!(
                    "{name} wrote {} of its {} bytes",
                    peer.wrote.len(),
                    conv.to_guest
                ),
            ));
        }
        if !peer.saw_end {
            v.push(Violation::new(
                "tcp-peer",
                format!("{name} never saw its connection end"),
            ));
        }
    }
    if guest.closed_port_connected == Some(true) {
        v.push(Violation::new(
            "tcp-refused",
            format!("a connect to port {CLOSED_PORT}, where nobody listens, succeeded"),
        ));
    }
    v
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
    records: PeerRecords,
    activity: Activity,
}

impl PeerEnv {
    fn record(&self, f: impl FnOnce(&mut PeerRecord)) {
        f(self
            .records
            .borrow_mut()
            .entry(self.name.clone())
            .or_default());
        self.activity.bump();
    }

    async fn send(&self, stream: &mut TcpStream, data: &[u8], chunk: usize) -> turmoil::Result {
        for piece in data.chunks(chunk.max(1)) {
            stream.write_all(piece).await?;
            self.record(|r| r.wrote.extend_from_slice(piece));
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
                self.record(|r| r.saw_end = true);
                return Ok(());
            }
            self.record(|r| r.read.extend_from_slice(&buf[..n]));
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
