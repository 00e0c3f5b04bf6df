//! The simulated vat network of our own vats: every connection is a pair of directions of the
//! link (`link.rs`), each a FIFO of real encoded `rpc.capnp` messages.
//!
//! Faults: delivery delays and interleaving, connection loss (both ends learn at once and every
//! message in flight is lost; the link comes back with a new epoch), and vat restarts (the vat
//! loses every connection and all its state).

use super::Links;
use super::link::{InFlight, Link, summary};
use super::observe::Observer;
use captp::wire::encode;
use captp::{Vat, VatConfig, VatId};
use models::rpc::WireChecker;
use simkit::Ctx;
use std::collections::BTreeMap;

/// One trace line the network owes: on the lane of the vat it concerns (`vat0`, `vat1`, ...).
pub struct LogLine {
    pub lane: String,
    pub event: &'static str,
    pub details: String,
}

fn line(lane: String, event: &'static str, details: String) -> LogLine {
    LogLine {
        lane,
        event,
        details,
    }
}

/// The vats and the queues between them.
pub struct Net {
    pub vats: Vec<Vat>,
    link: Link,
    epochs: BTreeMap<(VatId, VatId), u32>,
    topology: Links,
    configs: Vec<VatConfig>,
    pub checker: WireChecker,
    /// Trace lines for the run's trace: a send on the sender's lane (`send=m<from>.<to>#<n>`),
    /// its delivery on the receiver's (`recv=` the same), so a report draws the message.
    pub log: Vec<LogLine>,
    sent: BTreeMap<(VatId, VatId), u64>,
    pub delivered: u64,
    pub decode_errors: Vec<String>,
    /// Coverage and goals, seen from the wire.
    pub observer: Observer,
}

impl Net {
    pub fn new(configs: Vec<VatConfig>, topology: Links, max_delay: u64) -> Self {
        let vats = configs
            .iter()
            .enumerate()
            .map(|(i, c)| Vat::new(i as VatId, c.clone()))
            .collect();
        let mut net = Net {
            vats,
            link: Link::new(max_delay),
            epochs: BTreeMap::new(),
            topology,
            configs,
            checker: WireChecker::new(),
            log: Vec::new(),
            sent: BTreeMap::new(),
            delivered: 0,
            decode_errors: Vec::new(),
            observer: Observer::default(),
        };
        for (a, b) in net.topology.pairs() {
            net.link_up(a, b);
        }
        net
    }

    fn link_up(&mut self, a: VatId, b: VatId) {
        let key = (a.min(b), a.max(b));
        let epoch = self.epochs.entry(key).or_insert(0);
        *epoch += 1;
        let epoch = *epoch;
        let tp = self.topology.third_party;
        self.vats[a as usize].connect(b, epoch, tp);
        self.vats[b as usize].connect(a, epoch, tp);
    }

    /// Moves every vat's outgoing messages onto the link, each with a delay drawn from `ctx`
    /// (none without one).
    pub fn collect(&mut self, now: u64, ctx: Option<&Ctx>) {
        for i in 0..self.vats.len() {
            for (to, msg) in self.vats[i].take_outgoing() {
                let from = i as VatId;
                self.observer.sending(from, &msg);
                let mut m = InFlight::new(encode(&msg));
                let n = self.sent.entry((from, to)).or_default();
                *n += 1;
                m.seq = *n;
                self.log.push(line(
                    format!("vat{from}"),
                    "send",
                    format!("to=vat{to} {} send=m{from}.{to}#{}", summary(&msg), m.seq),
                ));
                self.link.send(from, to, m, now, ctx);
            }
        }
        self.observer.collected();
    }

    /// The directions whose head is deliverable at `now`, in order.
    pub fn ready(&self, now: u64) -> Vec<(VatId, VatId)> {
        self.link.ready(now)
    }

    /// When the next message becomes deliverable, if any is in flight.
    pub fn next_ready_at(&self) -> Option<u64> {
        self.link.next_ready_at()
    }

    /// Delivers the head of the queue `from -> to`.
    pub fn deliver(&mut self, from: VatId, to: VatId) {
        let Some(m) = self.link.pop(from, to) else {
            return;
        };
        let seq = m.seq;
        let msg = match m.open(from, to) {
            Ok((msg, _)) => msg,
            Err(e) => {
                self.decode_errors.push(e);
                return;
            }
        };
        self.delivered += 1;
        self.log.push(line(
            format!("vat{to}"),
            "recv",
            format!("from=vat{from} {} recv=m{from}.{to}#{seq}", summary(&msg)),
        ));
        self.checker.delivered(from, to, &msg);
        let vats = &self.vats;
        self.observer
            .delivering(from, to, &msg, |v, p| vats[v as usize].table_sizes(p));
        // A protocol error ends in an Abort the vat already queued; the wire checker sees it.
        let _ = self.vats[to as usize].handle(from, msg);
    }

    /// Loses the connection between `a` and `b` (and everything in flight on it), then
    /// reconnects with a new epoch.
    pub fn disconnect(&mut self, a: VatId, b: VatId) {
        self.log
            .push(line(format!("vat{a}"), "disconnect", format!("vat{b}")));
        let vats = &self.vats;
        self.observer
            .disconnecting(a, b, |v, p| vats[v as usize].table_sizes(p));
        self.link.cut(a, b);
        self.checker.disconnected(a, b);
        self.vats[a as usize].disconnect(b, "simulated connection loss");
        self.vats[b as usize].disconnect(a, "simulated connection loss");
        // Messages the disconnect itself produced (none expected) would go on the new link.
        self.link_up(a, b);
    }

    /// Restarts vat `v`: a fresh vat with no state, reconnected to its peers.
    pub fn restart(&mut self, v: VatId) {
        self.log
            .push(line(format!("vat{v}"), "restart", String::new()));
        for peer in self.topology.peers_of(v) {
            let vats = &self.vats;
            self.observer
                .disconnecting(v, peer, |x, p| vats[x as usize].table_sizes(p));
            self.link.cut(v, peer);
            self.checker.disconnected(v, peer);
            self.vats[peer as usize].disconnect(v, "peer restarted");
        }
        self.vats[v as usize] = Vat::new(v, self.configs[v as usize].clone());
        for peer in self.topology.peers_of(v) {
            self.link_up(v, peer);
        }
    }
}
