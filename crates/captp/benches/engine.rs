//! Messages per second through the engine: two vats back to back in memory, every message
//! handed from one vat's `take_outgoing` to the other's `handle` (through `encode` and `decode`,
//! as on a real connection, or as the value itself), and the codec alone.
//!
//! - `round_trip`: A calls B's bootstrap probe, B answers (no capabilities), A finishes: `Call`,
//!   `Return`, `Finish` per iteration.
//! - `pipelined_depth4`: A calls B's bootstrap probe, calls the probe in that answer before it
//!   returns, and so on four deep, all before anything is delivered; B answers each with a
//!   fresh probe; A finishes every answer and releases every capability.
//! - `codec`: `encode` and `decode` of a typical `Call` (a `Probe.call` on an import).
//!
//! Throughput is in messages: every message one vat hands the other counts once. Each engine
//! case checks first that an iteration leaves both vats as it found them, so that what is
//! measured is a steady state.
#![allow(clippy::unwrap_used)]

use captp::probe::{CALL_METHOD, PROBE_INTERFACE_ID, ProbeCall, ProbeReturn};
use captp::{
    AnswerRef, CapRef, Message, ObjectId, Outcome, Vat, VatConfig, VatEvent, VatId, decode, encode,
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

const A: VatId = 0;
const B: VatId = 1;
const BOOT: ObjectId = 1;

/// Two connected vats: A the caller, B the callee, whose application answers every call as
/// it arrives.
struct Pair {
    a: Vat,
    b: Vat,
    /// Messages go through `encode` and `decode` on the way.
    wire: bool,
    /// B's answers carry a fresh probe (else no capability).
    answer_with_cap: bool,
    next_object: ObjectId,
    /// Messages delivered so far.
    delivered: u64,
    /// The bootstrap capability A holds.
    boot: Option<CapRef>,
}

fn config() -> VatConfig {
    VatConfig {
        third_party_handoff: false,
        bug: None,
    }
}

impl Pair {
    fn new(wire: bool, answer_with_cap: bool) -> Pair {
        let mut a = Vat::new(A, config());
        let mut b = Vat::new(B, config());
        a.connect(B, 0, false);
        b.connect(A, 0, false);
        b.set_bootstrap(BOOT);
        let mut pair = Pair {
            a,
            b,
            wire,
            answer_with_cap,
            next_object: BOOT,
            delivered: 0,
            boot: None,
        };
        let q = pair.a.bootstrap(B);
        pair.run();
        let Some(Outcome::Results { caps, .. }) = pair.a.outcome(&q) else {
            panic!("no bootstrap capability");
        };
        pair.a.finish(q);
        pair.boot = caps.into_iter().next();
        pair.run();
        pair
    }

    fn carry(&self, msg: Message) -> Message {
        if self.wire {
            decode(&encode(&msg)).unwrap()
        } else {
            msg
        }
    }

    /// Delivers messages both ways, and B answers its calls, until both vats are quiet.
    fn run(&mut self) {
        loop {
            let to_b = self.a.take_outgoing();
            let to_a = self.b.take_outgoing();
            if to_b.is_empty() && to_a.is_empty() {
                return;
            }
            for (to, msg) in to_b {
                debug_assert_eq!(to, B);
                let msg = self.carry(msg);
                self.b.handle(A, msg).unwrap();
                self.delivered += 1;
                // B answers before the next message, so a call pipelined on one of its answers
                // finds the answer given (one that arrives while the answer is pending is
                // currently failed: "promise dropped with calls queued").
                self.answer_calls();
            }
            for (to, msg) in to_a {
                debug_assert_eq!(to, A);
                let msg = self.carry(msg);
                self.a.handle(B, msg).unwrap();
                self.delivered += 1;
            }
            assert!(self.a.take_events().is_empty(), "A has no objects to call");
        }
    }

    /// B's application: `Probe.call` returns `n = 0` and a fresh probe or no capability.
    fn answer_calls(&mut self) {
        for event in self.b.take_events() {
            let VatEvent::Call {
                call,
                content,
                caps,
                ..
            } = event
            else {
                panic!("unexpected event at B: {event:?}");
            };
            let params = ProbeCall::from_value(&content).unwrap();
            black_box(params);
            if self.answer_with_cap {
                self.next_object += 1;
                let cap = self.b.local_cap(self.next_object);
                let results = ProbeReturn { n: 0, cap: Some(0) };
                self.b
                    .return_results(call, results.to_value(), &[&cap])
                    .unwrap();
                self.b.release(cap);
            } else {
                let results = ProbeReturn { n: 0, cap: None };
                self.b
                    .return_results(call, results.to_value(), &[])
                    .unwrap();
            }
            for cap in caps {
                self.b.release(cap);
            }
        }
    }

    fn probe_call(&mut self, target: &CapRef, seq: u64) -> AnswerRef {
        let params = ProbeCall {
            ref_id: 1,
            seq,
            arg: None,
        };
        self.a.call(
            target,
            PROBE_INTERFACE_ID,
            CALL_METHOD,
            params.to_value(),
            &[],
        )
    }

    /// A's side of an answer that has come back: reads it, gives back its capabilities, and
    /// finishes it.
    fn take_answer(&mut self, answer: AnswerRef) {
        match self.a.outcome(&answer) {
            Some(Outcome::Results { content, caps }) => {
                black_box(ProbeReturn::from_value(&content).unwrap());
                for cap in caps {
                    self.a.release(cap);
                }
            }
            other => panic!("unexpected outcome {other:?}"),
        }
        self.a.finish(answer);
    }

    /// One call on the bootstrap probe, answered and finished.
    fn round_trip(&mut self) {
        let boot = self.boot.take().unwrap();
        let q = self.probe_call(&boot, 0);
        self.boot = Some(boot);
        self.run();
        self.take_answer(q);
        self.run();
    }

    /// A chain of `depth` calls, each on the capability in the previous one's results, all
    /// made before anything is delivered.
    fn pipelined(&mut self, depth: u64) {
        let mut answers = Vec::new();
        let mut pipelined = Vec::new();
        let mut target = self.a.clone_cap(self.boot.as_ref().unwrap());
        for seq in 0..depth {
            let answer = self.probe_call(&target, seq);
            let next = self.a.pipeline(&answer, &[0]);
            pipelined.push(std::mem::replace(&mut target, next));
            answers.push(answer);
        }
        pipelined.push(target);
        self.run();
        for cap in pipelined {
            self.a.release(cap);
        }
        for answer in answers {
            self.take_answer(answer);
        }
        self.run();
    }

    /// Runs `step` once to count its messages, and a few more times to check that it leaves
    /// both vats as it found them; the messages per step.
    fn messages_per_step(&mut self, step: Step) -> u64 {
        let before = self.delivered;
        step(self);
        let per_step = self.delivered - before;
        let counts = (self.a.live_counts(), self.b.live_counts());
        let sizes = (self.a.table_sizes(B), self.b.table_sizes(A));
        for _ in 0..100 {
            let before = self.delivered;
            step(self);
            assert_eq!(self.delivered - before, per_step, "messages per step vary");
        }
        assert_eq!((self.a.live_counts(), self.b.live_counts()), counts);
        assert_eq!((self.a.table_sizes(B), self.b.table_sizes(A)), sizes);
        per_step
    }
}

/// One iteration of an engine case.
type Step = fn(&mut Pair);

fn engine(c: &mut Criterion) {
    let cases: [(&str, bool, Step); 2] = [
        ("round_trip", false, Pair::round_trip),
        ("pipelined_depth4", true, |p| p.pipelined(4)),
    ];
    for (name, answer_with_cap, step) in cases {
        let mut group = c.benchmark_group(name);
        for wire in [true, false] {
            let mut pair = Pair::new(wire, answer_with_cap);
            let per_step = pair.messages_per_step(step);
            group.throughput(Throughput::Elements(per_step));
            let label = if wire { "wire" } else { "in_memory" };
            group.bench_function(
                BenchmarkId::new(label, format!("{per_step}_msgs")),
                |bench| bench.iter(|| step(&mut pair)),
            );
        }
        group.finish();
    }
}

/// The `Call` A sends for a `Probe.call` on its bootstrap import.
fn typical_call() -> Message {
    let mut pair = Pair::new(true, false);
    let boot = pair.boot.take().unwrap();
    let q = pair.probe_call(&boot, 7);
    let mut out = pair.a.take_outgoing();
    assert_eq!(out.len(), 1);
    let (_, msg) = out.remove(0);
    assert!(matches!(msg, Message::Call(_)), "{msg:?}");
    pair.a.finish(q);
    pair.a.release(boot);
    msg
}

fn codec(c: &mut Criterion) {
    let msg = typical_call();
    let bytes = encode(&msg);
    assert_eq!(decode(&bytes).unwrap(), msg);
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("encode_call", bytes.len()), |b| {
        b.iter(|| encode(black_box(&msg)))
    });
    group.bench_function(BenchmarkId::new("decode_call", bytes.len()), |b| {
        b.iter(|| decode(black_box(&bytes)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, engine, codec);
criterion_main!(benches);
