//! `sim hw --scenario pipe-tcp`: the pipe-tcp workload on real parts (`hw_metal`), with the
//! plan derived from the seed exactly as the simulation derives it. The monitor's TCP relays
//! reach real sockets on loopback (`monitor::host_net`), and the external clients and servers are
//! tokio tasks beside the monitor, each recording what it wrote and read. The simulation's
//! oracle (`judge_tcp`) compares the guest's records with the peers', with the hardware run's own
//! checks.
//!
//! The simulation's transient partitions have no form here (loopback does not partition); the
//! plan's draws for them are made and left unused, so the rest of the plan matches the seed.
//! The planted relay bug `pipe-tcp-fin-before-drain` has a hardware form.

use crate::exit::UsageError;
use crate::hw::metal::{HardwareBug, MetalSetup, NoFiles, run_metal};
use crate::hw::trace::{Outcome, Trace};
use guest_programs::tcp::{self, LISTEN_PORT, SERVER_PORT, TcpPlan, TcpResults};
use models::Violation;
use monitor::host_net::HostNet;
use scenarios::{PeerRecord, PeerRecords, judge_tcp};
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The planted bug `plant` names, in its hardware form for this scenario.
fn planted(plant: Option<&str>) -> Result<HardwareBug, UsageError> {
    match plant {
        None => Ok(HardwareBug::default()),
        Some("pipe-tcp-fin-before-drain") => Ok(HardwareBug {
            monitor: monitor::planted::TCP_FIN_BEFORE_DRAIN,
            ..HardwareBug::default()
        }),
        Some(name) => crate::hw::pipes::planted(Some(name)),
    }
}

/// The plan of simulated seed `seed`, and where its ring cursors start.
fn derive_plan(seed: u64) -> (TcpPlan, u64) {
    let mut ds = simkit::DecisionSource::seeded(seed);
    let mut derive = |_: &str, lo: u64, hi: u64| ds.range_inclusive(lo, hi);
    let (plan, _) = tcp::plan(&mut derive);
    // The simulation's partitions and network seed: drawn, unused on loopback.
    let holds = derive("holds", 0, 3);
    for _ in 0..holds {
        derive("hold_peer", 0, plan.conversations.len() as u64 - 1);
        derive("hold_after_us", 0, 600);
        derive("hold_for_us", 20, 800);
    }
    derive("net_seed", 0, u64::MAX);
    let start_cursor = if derive("near_max_cursors", 0, 1) == 1 {
        u64::MAX - derive("start", 0, 4096)
    } else {
        0
    };
    (plan, start_cursor)
}

/// What an external peer needs: its name, the records, and the network directory.
#[derive(Clone)]
struct Peer {
    name: String,
    records: PeerRecords,
}

impl Peer {
    fn record(&self, f: impl FnOnce(&mut PeerRecord)) {
        f(self
            .records
            .borrow_mut()
            .entry(self.name.clone())
            .or_default());
    }

    fn failed(&self, errors: &PeerErrors, what: &str, e: std::io::Error) {
        errors
            .borrow_mut()
            .push(format!("{}: {what}: {e}", self.name));
    }

    async fn send(&self, stream: &mut TcpStream, data: &[u8], chunk: usize) -> std::io::Result<()> {
        for piece in data.chunks(chunk.max(1)) {
            stream.write_all(piece).await?;
            self.record(|r| r.wrote.extend_from_slice(piece));
        }
        stream.shutdown().await
    }

    async fn receive_to_end(&self, stream: &mut TcpStream) -> std::io::Result<()> {
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

type PeerErrors = Rc<std::cell::RefCell<Vec<String>>>;

/// A client: waits for the guest to listen, connects from a named local address, sends its
/// request, half-closes and reads the answer to its end.
async fn client(peer: Peer, net: HostNet, request: Vec<u8>, chunk: usize, errors: PeerErrors) {
    let at = loop {
        match net.guest_listener(LISTEN_PORT) {
            Some(at) => break at,
            None => tokio::time::sleep(Duration::from_micros(200)).await,
        }
    };
    let stream = async {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        net.client(&peer.name, socket.local_addr()?);
        socket.connect(at).await
    };
    let mut stream = match stream.await {
        Ok(s) => s,
        Err(e) => return peer.failed(&errors, "connect to the guest", e),
    };
    if let Err(e) = peer.send(&mut stream, &request, chunk).await {
        return peer.failed(&errors, "send", e);
    }
    if let Err(e) = peer.receive_to_end(&mut stream).await {
        peer.failed(&errors, "receive", e);
    }
}

/// A server: accepts one connection, reads the guest's request to its end, answers, half-closes.
async fn server(
    peer: Peer,
    listener: std::net::TcpListener,
    response: Vec<u8>,
    chunk: usize,
    errors: PeerErrors,
) {
    let accepted = async {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        listener.accept().await
    };
    let mut stream = match accepted.await {
        Ok((s, _)) => s,
        Err(e) => return peer.failed(&errors, "accept", e),
    };
    if let Err(e) = peer.receive_to_end(&mut stream).await {
        return peer.failed(&errors, "receive", e);
    }
    if let Err(e) = peer.send(&mut stream, &response, chunk).await {
        peer.failed(&errors, "send", e);
    }
}

/// One hardware run of pipe-tcp with the workload of `seed`.
pub fn run_once(seed: u64, plant: Option<&str>, jitter_one_in: u32) -> Result<Outcome, UsageError> {
    let bug = planted(plant)?;
    let (plan, start_cursor) = derive_plan(seed);
    let net = HostNet::new();
    let records: PeerRecords = Rc::default();
    let errors: PeerErrors = Rc::default();
    // Servers listen before the guest boots, so its connects find them.
    let mut peers = Vec::new();
    for (i, conv) in plan.conversations.iter().enumerate() {
        let peer = Peer {
            name: plan.name(i),
            records: records.clone(),
        };
        let (data, chunk) = (conv.to_guest_bytes(), conv.chunk as usize);
        net.host(&peer.name);
        if i < plan.clients {
            peers.push((peer, None, data, chunk));
        } else {
            let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
            net.serve(
                &peer.name,
                SERVER_PORT + (i - plan.clients) as u16,
                listener.local_addr()?,
            );
            peers.push((peer, Some(listener), data, chunk));
        }
    }
    let (n, e) = (net.clone(), errors.clone());
    let host = async move {
        let mut tasks = Vec::new();
        for (peer, listener, data, chunk) in peers {
            let e = e.clone();
            tasks.push(match listener {
                None => tokio::task::spawn_local(client(peer, n.clone(), data, chunk, e)),
                Some(l) => tokio::task::spawn_local(server(peer, l, data, chunk, e)),
            });
        }
        for t in tasks {
            let _ = t.await;
        }
    };
    let run = run_metal(
        &plan.encode(),
        MetalSetup {
            seed,
            bug,
            jitter_one_in,
            start_cursor,
            files: Rc::new(NoFiles),
            net,
        },
        host,
    )?;
    let mut violations = Vec::new();
    let mut guest = match run.reports.received.iter().find(|(index, _)| *index == 0) {
        Some((_, bytes)) => TcpResults::decode(bytes).unwrap_or_else(|e| {
            violations.push(Violation::new(
                "guest-report",
                format!("the guest's results do not decode: {e}"),
            ));
            TcpResults::default()
        }),
        None => TcpResults::default(),
    };
    guest.errors = run.reports.errors.clone();
    violations.extend(judge_tcp(&plan, &guest, &records.borrow()));
    violations.extend(
        errors
            .borrow()
            .iter()
            .map(|e| Violation::new("tcp-peer", e.clone())),
    );
    violations.extend(run.violations());
    Ok(Outcome {
        hash: Trace::hash(&run.trace),
        trace: run.trace,
        violations,
        wall_ms: run.wall_ms,
    })
}
