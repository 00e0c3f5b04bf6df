//! A scripted vat network for regression tests: the test decides every application action and
//! every delivery, so a shape that once broke the engine is reproduced exactly, whatever the
//! simulation's workload or decision stream does later.
//!
//! Each connection is a pair of FIFO queues of encoded `rpc.capnp` messages (real bytes,
//! decoded at delivery). Application objects are probes: every `Probe.call` that reaches one
//! is recorded as an arrival `(object, ref, seq)` and kept as an owed call until the test
//! answers it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use captp::probe::{CALL_METHOD, PROBE_INTERFACE_ID, ProbeCall, ProbeReturn};
use captp::wire::{Message, decode, encode};
use captp::{AnswerRef, CallId, CapRef, ObjectId, Vat, VatConfig, VatEvent, VatId};
use std::collections::{BTreeMap, VecDeque};

/// A call that reached one of a vat's probe objects and waits for its answer.
pub struct Owed {
    pub call: CallId,
    pub object: ObjectId,
    pub ref_id: u64,
    pub seq: u64,
    /// The capability argument, if the call carried one.
    pub arg: Option<CapRef>,
}

pub struct Net {
    pub vats: Vec<Vat>,
    queues: BTreeMap<(VatId, VatId), VecDeque<Vec<u8>>>,
    epochs: BTreeMap<(VatId, VatId), u32>,
    /// Every probe call that reached an object, in arrival order: (object, ref, seq).
    pub arrivals: Vec<(ObjectId, u64, u64)>,
    /// Calls owed by each vat, oldest first.
    pub owed: Vec<Vec<Owed>>,
    /// Every message delivered, as (from, to, message), for assertions about the wire.
    pub delivered: Vec<(VatId, VatId, Message)>,
    /// Protocol errors the vats returned.
    pub errors: Vec<String>,
}

/// `Probe.call` params for call `seq` on reference `ref_id`.
pub fn params(ref_id: u64, seq: u64, with_arg: bool) -> captp::wire::AnyValue {
    ProbeCall {
        ref_id,
        seq,
        arg: with_arg.then_some(0),
    }
    .to_value()
}

/// `Probe.call` results holding one capability.
pub fn results() -> captp::wire::AnyValue {
    ProbeReturn { n: 0, cap: Some(0) }.to_value()
}

/// The object ID of a vat's probe number `n` (object 0 is its bootstrap).
pub fn object(vat: VatId, n: u64) -> ObjectId {
    (u64::from(vat) << 32) | n
}

impl Net {
    /// `n` vats, each with its bootstrap probe (object 0).
    pub fn new(configs: Vec<VatConfig>) -> Self {
        let n = configs.len();
        let mut vats: Vec<Vat> = configs
            .into_iter()
            .enumerate()
            .map(|(i, c)| Vat::new(i as VatId, c))
            .collect();
        for (i, v) in vats.iter_mut().enumerate() {
            v.set_bootstrap(object(i as VatId, 0));
        }
        Net {
            vats,
            queues: BTreeMap::new(),
            epochs: BTreeMap::new(),
            arrivals: Vec::new(),
            owed: (0..n).map(|_| Vec::new()).collect(),
            delivered: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// Opens (or reopens, at a new epoch) the connection between `a` and `b`.
    pub fn connect(&mut self, a: VatId, b: VatId, third_party: bool) {
        let epoch = self.epochs.entry((a.min(b), a.max(b))).or_insert(0);
        *epoch += 1;
        let epoch = *epoch;
        self.vats[a as usize].connect(b, epoch, third_party);
        self.vats[b as usize].connect(a, epoch, third_party);
    }

    /// Loses the connection between `a` and `b`, and everything in flight on it.
    pub fn disconnect(&mut self, a: VatId, b: VatId) {
        self.pump();
        self.queues.remove(&(a, b));
        self.queues.remove(&(b, a));
        self.vats[a as usize].disconnect(b, "scripted connection loss");
        self.vats[b as usize].disconnect(a, "scripted connection loss");
        self.pump();
    }

    pub fn vat(&mut self, v: VatId) -> &mut Vat {
        &mut self.vats[v as usize]
    }

    /// Moves every vat's outgoing messages into the queues and its events to the application.
    pub fn pump(&mut self) {
        for i in 0..self.vats.len() {
            for (to, msg) in self.vats[i].take_outgoing() {
                self.queues
                    .entry((i as VatId, to))
                    .or_default()
                    .push_back(encode(&msg));
            }
            for ev in self.vats[i].take_events() {
                if let VatEvent::Call {
                    call,
                    object,
                    content,
                    mut caps,
                    ..
                } = ev
                {
                    let p = ProbeCall::from_value(&content).expect("a probe call");
                    self.arrivals.push((object, p.ref_id, p.seq));
                    let arg = if p.arg.is_some() && !caps.is_empty() {
                        Some(caps.remove(0))
                    } else {
                        None
                    };
                    for c in caps {
                        self.vats[i].release(c);
                    }
                    self.owed[i].push(Owed {
                        call,
                        object,
                        ref_id: p.ref_id,
                        seq: p.seq,
                        arg,
                    });
                }
            }
        }
    }

    /// How many messages wait on `from -> to`.
    pub fn pending(&mut self, from: VatId, to: VatId) -> usize {
        self.pump();
        self.queues.get(&(from, to)).map_or(0, VecDeque::len)
    }

    /// The kind of the message at the head of `from -> to`, if any.
    pub fn head(&mut self, from: VatId, to: VatId) -> Option<&'static str> {
        self.pump();
        let bytes = self.queues.get(&(from, to))?.front()?;
        Some(decode(bytes).expect("our own encoding").kind())
    }

    /// Delivers the head of `from -> to`; returns its kind.
    pub fn deliver(&mut self, from: VatId, to: VatId) -> &'static str {
        self.pump();
        let bytes = self
            .queues
            .get_mut(&(from, to))
            .and_then(VecDeque::pop_front)
            .unwrap_or_else(|| panic!("nothing to deliver on {from} -> {to}"));
        let msg = decode(&bytes).expect("our own encoding");
        let kind = msg.kind();
        self.delivered.push((from, to, msg.clone()));
        if let Err(e) = self.vats[to as usize].handle(from, msg) {
            self.errors
                .push(format!("vat {to} on a {kind} from vat {from}: {e}"));
        }
        self.pump();
        kind
    }

    /// Takes the head of `from -> to` off the link without delivering it (for a peer the test
    /// plays by hand).
    pub fn take(&mut self, from: VatId, to: VatId) -> Message {
        self.pump();
        let bytes = self
            .queues
            .get_mut(&(from, to))
            .and_then(VecDeque::pop_front)
            .unwrap_or_else(|| panic!("nothing on {from} -> {to}"));
        decode(&bytes).expect("our own encoding")
    }

    /// Hands `msg` to `to` as if `from` had sent it (a peer the test plays by hand).
    pub fn inject(&mut self, from: VatId, to: VatId, msg: Message) {
        let bytes = encode(&msg);
        let msg = decode(&bytes).expect("a well-formed message");
        let kind = msg.kind();
        self.delivered.push((from, to, msg.clone()));
        if let Err(e) = self.vats[to as usize].handle(from, msg) {
            self.errors
                .push(format!("vat {to} on a {kind} from vat {from}: {e}"));
        }
        self.pump();
    }

    /// Delivers `n` messages of `from -> to`.
    pub fn deliver_n(&mut self, from: VatId, to: VatId, n: usize) {
        for _ in 0..n {
            self.deliver(from, to);
        }
    }

    /// Delivers everything queued on `from -> to` (and what that queues there meanwhile).
    pub fn deliver_all(&mut self, from: VatId, to: VatId) {
        while self.pending(from, to) > 0 {
            self.deliver(from, to);
        }
    }

    /// Delivers everything, direction by direction in order, until the network is quiet.
    pub fn drain(&mut self) {
        loop {
            self.pump();
            let Some(&(from, to)) = self
                .queues
                .iter()
                .find(|(_, q)| !q.is_empty())
                .map(|(k, _)| k)
            else {
                return;
            };
            self.deliver(from, to);
        }
    }

    /// Calls `target` from vat `v` as call `seq` on reference `ref_id`, with an optional
    /// capability argument.
    pub fn call(
        &mut self,
        v: VatId,
        target: &CapRef,
        ref_id: u64,
        seq: u64,
        arg: Option<&CapRef>,
    ) -> AnswerRef {
        let caps: Vec<&CapRef> = arg.into_iter().collect();
        let a = self.vats[v as usize].call(
            target,
            PROBE_INTERFACE_ID,
            CALL_METHOD,
            params(ref_id, seq, arg.is_some()),
            &caps,
        );
        self.pump();
        a
    }

    /// The owed call of vat `v` that is call `seq` on reference `ref_id`.
    pub fn take_owed(&mut self, v: VatId, ref_id: u64, seq: u64) -> Owed {
        let i = self.owed[v as usize]
            .iter()
            .position(|o| o.ref_id == ref_id && o.seq == seq)
            .unwrap_or_else(|| panic!("vat {v} owes no call #{seq} on reference {ref_id}"));
        self.owed[v as usize].remove(i)
    }

    /// Answers an owed call with a capability (given back afterwards).
    pub fn answer_with(&mut self, v: VatId, owed: Owed, cap: CapRef) {
        let vat = &mut self.vats[v as usize];
        vat.return_results(owed.call, results(), &[&cap])
            .expect("the call is pending");
        vat.release(cap);
        if let Some(a) = owed.arg {
            vat.release(a);
        }
        self.pump();
    }

    /// Answers an owed call with its own argument.
    pub fn answer_with_arg(&mut self, v: VatId, mut owed: Owed) {
        let arg = owed.arg.take().expect("the call carried an argument");
        self.answer_with(v, owed, arg);
    }

    /// Answers an owed call with a fresh probe of vat `v`'s, object number `n`.
    pub fn answer_fresh(&mut self, v: VatId, owed: Owed, n: u64) {
        let cap = self.vats[v as usize].local_cap(object(v, n));
        self.answer_with(v, owed, cap);
    }

    /// Answers every owed call with a fresh probe, until none is owed and the network is quiet.
    pub fn settle_everything(&mut self) {
        let mut n = 1000;
        loop {
            self.drain();
            let Some(v) = (0..self.owed.len()).find(|&v| !self.owed[v].is_empty()) else {
                return;
            };
            let owed = self.owed[v].remove(0);
            self.answer_fresh(v as VatId, owed, n);
            n += 1;
        }
    }

    /// The order in which calls on `ref_id` reached their objects.
    pub fn order(&self, ref_id: u64) -> Vec<u64> {
        self.arrivals
            .iter()
            .filter(|(_, r, _)| *r == ref_id)
            .map(|(_, _, s)| *s)
            .collect()
    }

    /// Every vat tracks nothing (call once everything was given back and the network drained).
    pub fn assert_quiet(&self) {
        for v in &self.vats {
            assert_eq!(
                (v.live_counts(), v.pending_handoffs()),
                ((0, 0, 0), 0),
                "vat {} still tracks (nodes, results, calls) and handoffs",
                v.id()
            );
            for p in v.peers() {
                let t = v.table_sizes(p).expect("connected");
                assert!(t.is_empty(), "vat {} -> vat {p}: tables {t:?}", v.id());
            }
        }
    }
}
