//! The link between vats, the same for every RPC scenario: per-direction FIFO queues of real
//! encoded `rpc.capnp` messages. A message becomes deliverable after a seeded delay; the
//! workload delivers one deliverable queue head at a time, chosen by the decision source, so
//! interleaving across directions is seeded while each direction stays FIFO.
//!
//! Every message is decoded with our decoder as it is queued (as hostile input: what travels
//! is the encoding), so that the oracles can read what a vat said when it said it; the
//! receiver gets the decoded message or, for a peer that reads bytes, the bytes.

use captp::VatId;
use captp::wire::{Message, decode};
use simkit::Ctx;
use std::collections::{BTreeMap, VecDeque};

/// One message on its way.
#[derive(Debug)]
pub struct InFlight {
    ready_at: u64,
    bytes: Vec<u8>,
    /// The bytes, decoded when the message was queued (an undecodable message is a finding
    /// of the wire oracle at delivery).
    pub msg: Result<Message, String>,
    /// The message's number on its direction, linking its send and its delivery in the trace.
    pub seq: u64,
}

impl InFlight {
    /// A message of these bytes, decoded now.
    pub fn new(bytes: Vec<u8>) -> Self {
        let msg = decode(&bytes).map_err(|e| e.to_string());
        InFlight {
            ready_at: 0,
            bytes,
            msg,
            seq: 0,
        }
    }

    /// The message and its bytes, as `from` sent them to `to`; or, if the bytes do not
    /// decode, what the wire oracle reports.
    pub fn open(self, from: VatId, to: VatId) -> Result<(Message, Vec<u8>), String> {
        match self.msg {
            Ok(msg) => Ok((msg, self.bytes)),
            Err(e) => Err(format!("vat {from} -> vat {to}: undecodable message: {e}")),
        }
    }
}

/// The queues, one per direction, keyed by (sender, receiver).
#[derive(Debug)]
pub struct Link {
    queues: BTreeMap<(VatId, VatId), VecDeque<InFlight>>,
    /// The longest delay before a message is deliverable (0: at once).
    max_delay: u64,
}

impl Link {
    pub fn new(max_delay: u64) -> Self {
        Link {
            queues: BTreeMap::new(),
            max_delay,
        }
    }

    /// Queues `m` from `from` to `to`, deliverable from `now` plus a delay drawn from `ctx`
    /// (none without one: the final drain draws nothing).
    pub fn send(&mut self, from: VatId, to: VatId, mut m: InFlight, now: u64, ctx: Option<&Ctx>) {
        let delay = match ctx {
            Some(ctx) if self.max_delay > 0 => ctx.choose(self.max_delay + 1),
            _ => 0,
        };
        m.ready_at = now + delay;
        self.queues.entry((from, to)).or_default().push_back(m);
    }

    /// The directions whose head is deliverable at `now`, in order.
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

    /// Takes the head of the queue `from -> to`.
    pub fn pop(&mut self, from: VatId, to: VatId) -> Option<InFlight> {
        self.queues
            .get_mut(&(from, to))
            .and_then(VecDeque::pop_front)
    }

    /// Loses everything in flight between `a` and `b`, both ways (the connection is gone).
    pub fn cut(&mut self, a: VatId, b: VatId) {
        self.queues.remove(&(a, b));
        self.queues.remove(&(b, a));
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
