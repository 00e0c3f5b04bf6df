//! The simulated vat network.
//!
//! Model: every connection is a pair of per-direction FIFO queues of encoded `rpc.capnp`
//! messages (real bytes, decoded at delivery as hostile input). A message becomes deliverable
//! after a seeded delay; the workload delivers one deliverable queue head at a time, chosen by
//! the decision source, so interleaving across connections is seeded while each direction
//! stays FIFO.
//!
//! Faults: delivery delays and interleaving, connection loss (both ends learn at once and every
//! message in flight is lost; the link comes back with a new epoch), and vat restarts (the vat
//! loses every connection and all its state).

use super::Links;
use captp::wire::{Message, decode, encode};
use captp::{Vat, VatConfig, VatId};
use models::rpc::WireChecker;
use std::collections::{BTreeMap, VecDeque};

#[derive(Debug)]
struct InFlight {
    ready_at: u64,
    bytes: Vec<u8>,
}

/// The vats and the queues between them.
pub struct Net {
    pub vats: Vec<Vat>,
    queues: BTreeMap<(VatId, VatId), VecDeque<InFlight>>,
    epochs: BTreeMap<(VatId, VatId), u32>,
    links: Links,
    configs: Vec<VatConfig>,
    pub checker: WireChecker,
    /// Trace lines for the run's trace.
    pub log: Vec<String>,
    max_delay: u64,
    pub delivered: u64,
    pub decode_errors: Vec<String>,
}

impl Net {
    pub fn new(configs: Vec<VatConfig>, links: Links, max_delay: u64) -> Self {
        let vats = configs
            .iter()
            .enumerate()
            .map(|(i, c)| Vat::new(i as VatId, c.clone()))
            .collect();
        let mut net = Net {
            vats,
            queues: BTreeMap::new(),
            epochs: BTreeMap::new(),
            links,
            configs,
            checker: WireChecker::new(),
            log: Vec::new(),
            max_delay,
            delivered: 0,
            decode_errors: Vec::new(),
        };
        for (a, b) in net.links.pairs() {
            net.link_up(a, b);
        }
        net
    }

    fn link_up(&mut self, a: VatId, b: VatId) {
        let key = (a.min(b), a.max(b));
        let epoch = self.epochs.entry(key).or_insert(0);
        *epoch += 1;
        let epoch = *epoch;
        let tp = self.links.third_party;
        self.vats[a as usize].connect(b, epoch, tp);
        self.vats[b as usize].connect(a, epoch, tp);
    }

    /// Moves every vat's outgoing messages into the queues, each with a seeded delay.
    pub fn collect(&mut self, now: u64, mut delay: impl FnMut(u64) -> u64) {
        for i in 0..self.vats.len() {
            for (to, msg) in self.vats[i].take_outgoing() {
                let from = i as VatId;
                let bytes = encode(&msg);
                let d = if self.max_delay == 0 {
                    0
                } else {
                    delay(self.max_delay)
                };
                self.queues
                    .entry((from, to))
                    .or_default()
                    .push_back(InFlight {
                        ready_at: now + d,
                        bytes,
                    });
            }
        }
    }

    /// The queues whose head is deliverable at `now`, in order.
    pub fn ready(&self, now: u64) -> Vec<(VatId, VatId)> {
        self.queues
            .iter()
            .filter(|(_, q)| q.front().is_some_and(|m| m.ready_at <= now))
            .map(|(k, _)| *k)
            .collect()
    }

    /// When the next message becomes deliverable, if any is in flight.
    pub fn next_ready_at(&self) -> Option<u64> {
        self.queues
            .values()
            .filter_map(|q| q.front().map(|m| m.ready_at))
            .min()
    }

    /// Delivers the head of the queue `from -> to`.
    pub fn deliver(&mut self, from: VatId, to: VatId) {
        let Some(m) = self
            .queues
            .get_mut(&(from, to))
            .and_then(VecDeque::pop_front)
        else {
            return;
        };
        let msg = match decode(&m.bytes) {
            Ok(msg) => msg,
            Err(e) => {
                self.decode_errors
                    .push(format!("vat {from} -> vat {to}: undecodable message: {e}"));
                return;
            }
        };
        self.delivered += 1;
        self.log.push(format!("{from}->{to} {}", summary(&msg)));
        self.checker.delivered(from, to, &msg);
        // A protocol error ends in an Abort the vat already queued; the wire checker sees it.
        let _ = self.vats[to as usize].handle(from, msg);
    }

    /// Loses the connection between `a` and `b` (and everything in flight on it), then
    /// reconnects with a new epoch.
    pub fn disconnect(&mut self, a: VatId, b: VatId) {
        self.log.push(format!("disconnect {a}<->{b}"));
        self.queues.remove(&(a, b));
        self.queues.remove(&(b, a));
        self.checker.disconnected(a, b);
        self.vats[a as usize].disconnect(b, "simulated connection loss");
        self.vats[b as usize].disconnect(a, "simulated connection loss");
        // Messages the disconnect itself produced (none expected) would go on the new link.
        self.link_up(a, b);
    }

    /// Restarts vat `v`: a fresh vat with no state, reconnected to its peers.
    pub fn restart(&mut self, v: VatId) {
        self.log.push(format!("restart {v}"));
        for peer in self.links.peers_of(v) {
            self.queues.remove(&(v, peer));
            self.queues.remove(&(peer, v));
            self.checker.disconnected(v, peer);
            self.vats[peer as usize].disconnect(v, "peer restarted");
        }
        self.vats[v as usize] = Vat::new(v, self.configs[v as usize].clone());
        for peer in self.links.peers_of(v) {
            self.link_up(v, peer);
        }
    }
}

/// A short, stable description of a message for the trace.
pub fn summary(msg: &Message) -> String {
    use captp::wire::{
        CapDescriptor as C, DisembargoContext as D, MessageTarget as T, Resolution,
        ReturnResult as R,
    };
    let path =
        |pa: &captp::wire::PromisedAnswer| format!("q{}/{}", pa.question_id, pa.transform.len());
    let target = |t: &T| match t {
        T::ImportedCap(id) => format!("import {id}"),
        T::PromisedAnswer(pa) => format!("answer {}", path(pa)),
    };
    let desc = |d: &C| match d {
        C::None => "none".to_string(),
        C::SenderHosted(id) => format!("sh{id}"),
        C::SenderPromise(id) => format!("sp{id}"),
        C::ReceiverHosted(id) => format!("rh{id}"),
        C::ReceiverAnswer(pa) => format!("ra{}", path(pa)),
        C::ThirdPartyHosted { vine_id, .. } => format!("3p(vine {vine_id})"),
    };
    let caps = |t: &[C]| t.iter().map(desc).collect::<Vec<_>>().join(",");
    match msg {
        Message::Call(c) => format!(
            "call q{}{} -> {} caps=[{}]{}",
            c.question_id,
            match captp::probe::ProbeCall::from_value(&c.params.content) {
                Ok(p) => format!(" r{}#{}", p.ref_id, p.seq),
                Err(_) => String::new(),
            },
            target(&c.target),
            caps(&c.params.cap_table),
            match c.send_results_to {
                captp::wire::SendResultsTo::Caller => "",
                _ => " yourself",
            }
        ),
        Message::Return(r) => format!(
            "return q{} {}",
            r.answer_id,
            match &r.result {
                R::Results(p) => format!("results caps=[{}]", caps(&p.cap_table)),
                R::Exception(e) => format!("exception {:?}", e.reason),
                R::Canceled => "canceled".into(),
                R::ResultsSentElsewhere => "sent-elsewhere".into(),
                R::TakeFromOtherQuestion(q) => format!("take-from q{q}"),
                R::AcceptFromThirdParty(_) => "accept-from-third-party".into(),
            }
        ),
        Message::Finish(f) => format!("finish q{}", f.question_id),
        Message::Bootstrap(b) => format!("bootstrap q{}", b.question_id),
        Message::Release(r) => format!("release {} x{}", r.id, r.reference_count),
        Message::Resolve(r) => format!(
            "resolve {} -> {}",
            r.promise_id,
            match &r.resolution {
                Resolution::Cap(d) => desc(d),
                Resolution::Exception(e) => format!("exception {:?}", e.reason),
            }
        ),
        Message::Disembargo(d) => format!(
            "disembargo {} {}",
            target(&d.target),
            match d.context {
                D::SenderLoopback(e) => format!("sender-loopback {e}"),
                D::ReceiverLoopback(e) => format!("receiver-loopback {e}"),
                D::Accept => "accept".into(),
                D::Provide(q) => format!("provide q{q}"),
            }
        ),
        Message::Provide(p) => format!("provide q{} -> {}", p.question_id, target(&p.target)),
        Message::Accept(a) => format!("accept q{} embargo={}", a.question_id, a.embargo),
        Message::Abort(e) => format!("abort {:?}", e.reason),
        other => other.kind().to_string(),
    }
}
