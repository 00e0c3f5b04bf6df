//! A hostile peer for the vat engine: the driver behind the `rpc_hostile_peer` fuzz target and
//! its deterministic unit test (`vat/hostile_tests.rs`), so both check the same property.
//!
//! Two honest vats, Alice ([`ALICE`]) and Carol ([`CAROL`]), are connected to each other and to
//! the hostile vat ([`HOSTILE`]), all three with three-party handoff on. The input is a program
//! of one-byte operations, each with its own operands from the bytes that follow (the first
//! byte only says whether the run starts with everyone bootstrapping everyone):
//! - the hostile vat sends one of the honest vats a message: one it builds (every kind, with IDs
//!   mostly taken from what that vat told it, so that `Return`s, `Finish`es, `Resolve`s,
//!   `Disembargo`s, `Provide`s and `Accept`s reach live table entries), the encoding of one with
//!   a few bytes changed, or raw bytes; every message goes through the real codec first, so the
//!   engine only ever sees what [`decode`] (or [`read_message`]) can produce;
//! - an honest vat's application acts: bootstrap, call, pipeline, read an outcome, answer a
//!   call (results, exception, a promise, a tail call), release, finish, disconnect;
//! - the next message (or all of them) between Alice and Carol is delivered.
//!
//! When the hostile vat's connection to a vat has been aborted, it usually opens a new one
//! (a new epoch) before its next message, so that one violation does not end the run.
//!
//! The property, checked after every step (with `assert!`, so a failure is a crash):
//! - nothing panics, and bytes that do not decode are a typed [`WireError`];
//! - every message a vat sends encodes and decodes back to itself, and goes to a peer it is
//!   still connected to (nothing follows an `Abort`);
//! - `handle` returning an error means the vat sent that peer an `Abort` with a non-empty
//!   reason (the error's own exception) as its last message, closed the connection, reported
//!   it as a `Disconnected` event, and answers any further message with
//!   [`ProtocolError::Closed`] without sending anything; the error is the peer's fault;
//! - `handle` returning `Ok` means the vat did not abort that peer;
//! - any other connection a vat closes during a step also ends with an `Abort` carrying a
//!   reason (or, for the application's own `disconnect`, none), and a `Disconnected` event;
//! - Alice and Carol accept every message they send each other: the hostile vat cannot make
//!   them break their own connection;
//! - at the end, once every connection is closed and the application has given everything
//!   back, the vats hold nothing (no capability, answer, local call or handoff left over).

use crate::error::ProtocolError;
use crate::stream::read_message;
use crate::vat::{AnswerRef, CallId, CapRef, Outcome, Vat, VatConfig, VatEvent, VatId};
use crate::wire::{
    Accept, AnyValue, Bootstrap, Call, CapDescriptor, Disembargo, DisembargoContext, Exception,
    ExceptionType, Finish, Join, ListValue, Message, MessageTarget, PipelineOp, PromisedAnswer,
    Provide, Release, Resolution, Resolve, Return, ReturnResult, SendResultsTo, StructValue,
    WireError, decode, encode,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The honest introducer.
pub const ALICE: VatId = 0;
/// The hostile peer: its messages come from the input.
pub const HOSTILE: VatId = 1;
/// The honest third vat (provider or recipient in handoffs).
pub const CAROL: VatId = 2;
/// The epoch of every connection.
pub const EPOCH: u32 = 3;

/// Steps one input may take (each step is at least one byte).
const MAX_STEPS: usize = 400;
/// Capabilities and answers an application keeps (the oldest is given back beyond this).
const MAX_CAPS: usize = 12;
const MAX_ANSWERS: usize = 8;
/// IDs remembered per kind for the hostile vat to reuse.
const MAX_SEEN: usize = 16;

/// What one run did (for the unit test's reachability checks).
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Steps taken.
    pub steps: usize,
    /// Messages the hostile vat got through the codec, by kind and whether `handle` accepted it.
    pub handled: BTreeMap<(&'static str, bool), usize>,
    /// Why messages were refused, by kind and error (digits left out).
    pub refused: BTreeMap<(&'static str, String), usize>,
    /// Bytes (raw or mutated) that did not decode.
    pub wire_errors: usize,
    /// Messages the honest vats sent, by kind.
    pub sent: BTreeMap<&'static str, usize>,
    /// Connections closed by an `Abort` the engine sent.
    pub aborts: usize,
    /// Calls delivered to the applications.
    pub app_calls: usize,
}

/// Runs one input program. Panics (an `assert!`) if the engine breaks the property.
pub fn run(data: &[u8]) -> Stats {
    run_with(data, false)
}

/// As [`run`], printing every message and application action to stderr (to read a crash).
pub fn run_traced(data: &[u8]) -> Stats {
    run_with(data, true)
}

fn run_with(data: &[u8], trace: bool) -> Stats {
    let mut world = World::new(data);
    world.trace = trace;
    if world.src.byte() & 1 == 0 {
        world.prologue();
    }
    while !world.src.is_empty() && world.stats.steps < MAX_STEPS {
        world.step();
        world.stats.steps += 1;
    }
    world.wind_down();
    world.stats
}

// ---------------------------------------------------------------------------------------------
// The input.

struct Source<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Source<'_> {
    fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The next byte; zero once the input is used up.
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    /// True one time in `n`.
    fn one_in(&mut self, n: u8) -> bool {
        self.byte().is_multiple_of(n)
    }

    fn bool(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    /// A number below `n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        if n <= 256 {
            usize::from(self.byte()) % n
        } else {
            usize::from(self.u16()) % n
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// What the hostile vat knows about one honest vat.

#[derive(Default)]
struct Seen {
    /// Questions the honest vat asked us (Bootstrap, Call, Provide, Accept): for `Return`.
    its_questions: Vec<u32>,
    /// Its exports to us: for call targets, `Release`, `receiverHosted`.
    its_exports: Vec<u32>,
    /// Our questions to it: for `Finish`, promised-answer targets, `receiverAnswer`.
    our_questions: Vec<u32>,
    /// Our `Provide`s to it (as introducer): for `Disembargo.provide` and provision keys.
    our_provides: Vec<u32>,
    /// The nonces of those `Provide`s.
    our_nonces: Vec<u64>,
    next_nonce: u64,
    /// Our exports to it: for `Resolve`.
    our_exports: Vec<u32>,
    /// Its `senderLoopback` disembargoes, to reflect.
    embargoes: Vec<(MessageTarget, u32)>,
    /// Third-party capability IDs it sent us.
    third_party_ids: Vec<Vec<u8>>,
    /// The last messages it sent us (to echo as `Unimplemented`).
    recent: VecDeque<Message>,
    next_question: u32,
    next_export: u32,
    /// The epoch of our connection to it.
    epoch: u32,
}

impl Seen {
    fn new() -> Self {
        Seen {
            epoch: EPOCH,
            ..Seen::default()
        }
    }
}

fn remember<T: PartialEq>(list: &mut Vec<T>, x: T) {
    if list.contains(&x) {
        return;
    }
    if list.len() >= MAX_SEEN {
        list.remove(0);
    }
    list.push(x);
}

impl Seen {
    fn observe_desc(&mut self, d: &CapDescriptor) {
        match d {
            CapDescriptor::SenderHosted(id) | CapDescriptor::SenderPromise(id) => {
                remember(&mut self.its_exports, *id)
            }
            CapDescriptor::ThirdPartyHosted { id, vine_id } => {
                remember(&mut self.its_exports, *vine_id);
                if let AnyValue::Data(b) = id {
                    remember(&mut self.third_party_ids, b.clone());
                }
            }
            CapDescriptor::ReceiverHosted(id) => remember(&mut self.our_exports, *id),
            CapDescriptor::ReceiverAnswer(pa) => remember(&mut self.our_questions, pa.question_id),
            CapDescriptor::None => {}
        }
    }

    /// A message the honest vat sent us.
    fn observe(&mut self, m: &Message) {
        match m {
            Message::Bootstrap(b) => remember(&mut self.its_questions, b.question_id),
            Message::Call(c) => {
                remember(&mut self.its_questions, c.question_id);
                c.params.cap_table.iter().for_each(|d| self.observe_desc(d));
            }
            Message::Provide(p) => remember(&mut self.its_questions, p.question_id),
            Message::Accept(a) => remember(&mut self.its_questions, a.question_id),
            Message::Return(r) => match &r.result {
                ReturnResult::Results(p) => p.cap_table.iter().for_each(|d| self.observe_desc(d)),
                ReturnResult::TakeFromOtherQuestion(q) => remember(&mut self.its_questions, *q),
                _ => {}
            },
            Message::Resolve(Resolve {
                resolution: Resolution::Cap(d),
                ..
            }) => self.observe_desc(d),
            Message::Disembargo(Disembargo {
                target,
                context: DisembargoContext::SenderLoopback(id),
            }) => remember(&mut self.embargoes, (target.clone(), *id)),
            _ => {}
        }
        if self.recent.len() >= 8 {
            self.recent.pop_front();
        }
        self.recent.push_back(m.clone());
    }

    /// A message we sent it (and it accepted): IDs it retired are no longer worth naming.
    fn sent(&mut self, m: &Message) {
        match m {
            Message::Return(r) => self.its_questions.retain(|q| *q != r.answer_id),
            Message::Finish(f) => self.our_questions.retain(|q| *q != f.question_id),
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Building the hostile vat's messages.

/// An ID from `list` most of the time, else a small one (collisions) or any.
fn pick_id(src: &mut Source<'_>, list: &[u32]) -> u32 {
    match src.byte() % 16 {
        0..=12 if !list.is_empty() => list[src.below(list.len())],
        15 => src.u32(),
        _ => u32::from(src.byte() % 8),
    }
}

/// A question ID for a new question of ours: the next fresh one, or a reused one.
fn new_question(src: &mut Source<'_>, seen: &mut Seen) -> u32 {
    let q = match src.byte() % 8 {
        0..=4 => {
            let q = seen.next_question;
            seen.next_question = seen.next_question.wrapping_add(1);
            q
        }
        5 | 6 => pick_id(src, &seen.our_questions),
        _ => src.u32(),
    };
    remember(&mut seen.our_questions, q);
    q
}

fn new_export(src: &mut Source<'_>, seen: &mut Seen) -> u32 {
    let id = match src.byte() % 4 {
        0 | 1 => {
            let id = seen.next_export;
            seen.next_export = seen.next_export.wrapping_add(1);
            id
        }
        2 => pick_id(src, &seen.our_exports),
        _ => src.u32(),
    };
    remember(&mut seen.our_exports, id);
    id
}

fn data_blob(src: &mut Source<'_>) -> Vec<u8> {
    let n = src.below(12);
    src.bytes(n)
}

/// A value; capability pointers name indices below `caps` (none outside payloads).
fn value(src: &mut Source<'_>, depth: u32, caps: u32) -> AnyValue {
    match src.byte() % 8 {
        0 => AnyValue::Null,
        1 => AnyValue::Data(data_blob(src)),
        2 | 3 if caps > 0 => AnyValue::Capability(src.below(caps as usize) as u32),
        4 | 5 if depth > 0 => AnyValue::Struct(struct_value(src, depth - 1, caps, None)),
        6 if depth > 0 => AnyValue::List(list_value(src, depth - 1, caps)),
        _ => AnyValue::Null,
    }
}

fn struct_value(
    src: &mut Source<'_>,
    depth: u32,
    caps: u32,
    shape: Option<(usize, usize)>,
) -> StructValue {
    let (d, p) = shape.unwrap_or_else(|| (src.below(3), src.below(4)));
    StructValue {
        data: (0..d)
            .map(|_| if src.bool() { 0 } else { src.u64() })
            .collect(),
        pointers: (0..p).map(|_| value(src, depth, caps)).collect(),
    }
}

fn list_value(src: &mut Source<'_>, depth: u32, caps: u32) -> ListValue {
    let n = src.below(5);
    match src.byte() % 7 {
        0 => ListValue::Void(n as u32),
        1 => ListValue::Bits((0..n * 7).map(|_| src.bool()).collect()),
        2 => ListValue::U16((0..n).map(|_| src.u16()).collect()),
        3 => ListValue::U32((0..n).map(|_| src.u32()).collect()),
        4 => ListValue::U64((0..n).map(|_| src.u64()).collect()),
        5 => ListValue::Pointers((0..n).map(|_| value(src, depth, caps)).collect()),
        _ => {
            let shape = (src.below(3), src.below(3));
            ListValue::Structs(
                (0..n)
                    .map(|_| struct_value(src, depth, caps, Some(shape)))
                    .collect(),
            )
        }
    }
}

fn exception(src: &mut Source<'_>) -> Exception {
    let reasons = ["", "boom", "hostile", "\u{fffd}"];
    Exception {
        reason: reasons[src.below(reasons.len())].to_string(),
        kind: match src.byte() % 4 {
            0 => ExceptionType::Failed,
            1 => ExceptionType::Overloaded,
            2 => ExceptionType::Disconnected,
            _ => ExceptionType::Unimplemented,
        },
        trace: if src.one_in(4) {
            "trace".into()
        } else {
            String::new()
        },
    }
}

fn promised(src: &mut Source<'_>, questions: &[u32]) -> PromisedAnswer {
    let n = src.below(4);
    PromisedAnswer {
        question_id: pick_id(src, questions),
        transform: (0..n)
            .map(|_| match src.byte() % 6 {
                0 => PipelineOp::Noop,
                5 => PipelineOp::GetPointerField(src.u16()),
                k => PipelineOp::GetPointerField(u16::from(k - 1)),
            })
            .collect(),
    }
}

// The identifiers of three-party handoff, as `vat/handoff.rs` encodes them (other layouts
// are still worth sending: they must be refused cleanly):
// - a provision: introducer, connection epoch (u32s), nonce (u64), little-endian;
// - a third-party capability ID: the provider (u32), then the provision;
// - a `Provide.recipient`: the recipient (u32) and the provision's nonce (u64).

fn provision_key(introducer: VatId, epoch: u32, nonce: u64) -> Vec<u8> {
    let mut v = introducer.to_le_bytes().to_vec();
    v.extend_from_slice(&epoch.to_le_bytes());
    v.extend_from_slice(&nonce.to_le_bytes());
    v
}

fn recipient(src: &mut Source<'_>, nonce: u64) -> AnyValue {
    let vat = match src.byte() % 8 {
        0..=2 => ALICE,
        3..=5 => CAROL,
        6 => HOSTILE,
        _ => return value(src, 1, 0),
    };
    let mut v = vat.to_le_bytes().to_vec();
    v.extend_from_slice(&nonce.to_le_bytes());
    if src.one_in(16) {
        v.truncate(src.below(v.len()));
    }
    AnyValue::Data(v)
}

/// Everything the hostile vat knows, for the message it is building to `to`.
struct Ctx<'a> {
    to: VatId,
    seen: &'a mut Seen,
    /// Our `Provide`s to the other honest vat (for handoffs we introduce).
    other_nonces: &'a [u64],
    /// Third-party IDs the other honest vat sent us (handoffs it introduced).
    other_third_party: &'a [Vec<u8>],
    /// The epoch of our connection to the other honest vat.
    other_epoch: u32,
}

fn other(v: VatId) -> VatId {
    if v == ALICE { CAROL } else { ALICE }
}

fn descriptor(src: &mut Source<'_>, cx: &mut Ctx<'_>) -> CapDescriptor {
    match src.byte() % 10 {
        0 => CapDescriptor::None,
        1..=3 => CapDescriptor::SenderHosted(new_export(src, cx.seen)),
        4 | 5 => CapDescriptor::SenderPromise(new_export(src, cx.seen)),
        6 => CapDescriptor::ReceiverHosted(pick_id(src, &cx.seen.its_exports)),
        7 => CapDescriptor::ReceiverAnswer(promised(src, &cx.seen.our_questions)),
        _ => {
            // We introduce a capability hosted by the other honest vat (or by one that is
            // not there, or by the receiver itself).
            let provider = match src.byte() % 4 {
                0 | 1 => other(cx.to),
                2 => cx.to,
                _ => src.u32(),
            };
            let nonce = match src.byte() % 8 {
                0..=5 if !cx.other_nonces.is_empty() => {
                    cx.other_nonces[src.below(cx.other_nonces.len())]
                }
                _ => u64::from(src.byte() % 4),
            };
            let epoch = if src.one_in(8) {
                src.u32()
            } else {
                cx.other_epoch
            };
            let mut id = provider.to_le_bytes().to_vec();
            id.extend(provision_key(HOSTILE, epoch, nonce));
            if src.one_in(8) {
                id.truncate(src.below(id.len()));
            }
            CapDescriptor::ThirdPartyHosted {
                id: AnyValue::Data(id),
                vine_id: new_export(src, cx.seen),
            }
        }
    }
}

fn payload(src: &mut Source<'_>, cx: &mut Ctx<'_>) -> crate::wire::Payload {
    let n = src.below(4);
    let cap_table: Vec<CapDescriptor> = (0..n).map(|_| descriptor(src, cx)).collect();
    let caps = cap_table.len() as u32;
    let content = match src.byte() % 4 {
        0 if caps > 0 => AnyValue::Capability(0),
        1 if caps > 0 => AnyValue::Struct(StructValue {
            data: vec![src.u64()],
            pointers: (0..caps).map(AnyValue::Capability).collect(),
        }),
        _ => value(src, 3, caps),
    };
    crate::wire::Payload { content, cap_table }
}

fn target(src: &mut Source<'_>, cx: &mut Ctx<'_>) -> MessageTarget {
    if src.one_in(2) {
        MessageTarget::ImportedCap(pick_id(src, &cx.seen.its_exports))
    } else {
        MessageTarget::PromisedAnswer(promised(src, &cx.seen.our_questions))
    }
}

fn message(src: &mut Source<'_>, cx: &mut Ctx<'_>, depth: u32) -> Message {
    match src.byte() % 32 {
        0 if src.one_in(4) => Message::Abort(exception(src)),
        1..=2 => Message::Bootstrap(Bootstrap {
            question_id: new_question(src, cx.seen),
            deprecated_object_id: if src.one_in(8) {
                value(src, 1, 0)
            } else {
                AnyValue::Null
            },
        }),
        3..=8 => {
            let question_id = new_question(src, cx.seen);
            let target = target(src, cx);
            let params = payload(src, cx);
            Message::Call(Call {
                question_id,
                target,
                interface_id: if src.bool() { 0 } else { src.u64() },
                method_id: src.u16(),
                allow_third_party_tail_call: src.bool(),
                no_promise_pipelining: src.bool(),
                only_promise_pipeline: src.bool(),
                params,
                send_results_to: match src.byte() % 8 {
                    0 => SendResultsTo::Yourself,
                    1 => SendResultsTo::ThirdParty(value(src, 1, 0)),
                    _ => SendResultsTo::Caller,
                },
            })
        }
        9..=13 => {
            let answer_id = pick_id(src, &cx.seen.its_questions);
            let flags = src.byte();
            let result = match src.byte() % 10 {
                0..=4 => ReturnResult::Results(payload(src, cx)),
                5 => ReturnResult::Exception(exception(src)),
                6 => ReturnResult::Canceled,
                7 => ReturnResult::ResultsSentElsewhere,
                8 => ReturnResult::TakeFromOtherQuestion(pick_id(src, &cx.seen.our_questions)),
                _ => ReturnResult::AcceptFromThirdParty(value(src, 1, 0)),
            };
            Message::Return(Return {
                answer_id,
                release_param_caps: flags & 1 == 1,
                no_finish_needed: flags & 6 == 6,
                result,
            })
        }
        14..=16 => Message::Finish(Finish {
            question_id: pick_id(src, &cx.seen.our_questions),
            release_result_caps: src.bool(),
            require_early_cancellation_workaround: src.bool(),
        }),
        17..=18 => Message::Resolve(Resolve {
            promise_id: pick_id(src, &cx.seen.our_exports),
            resolution: if src.one_in(4) {
                Resolution::Exception(exception(src))
            } else {
                Resolution::Cap(descriptor(src, cx))
            },
        }),
        19..=20 => Message::Release(Release {
            id: pick_id(src, &cx.seen.its_exports),
            reference_count: match src.byte() % 8 {
                0 => 0,
                7 => src.u32(),
                k => u32::from(k.min(3)),
            },
        }),
        21..=24 => {
            let (target, context) = match src.byte() % 6 {
                0 | 1 if !cx.seen.embargoes.is_empty() => {
                    // Reflect one of its embargoes (perhaps on another target).
                    let (t, id) = cx.seen.embargoes[src.below(cx.seen.embargoes.len())].clone();
                    let t = if src.one_in(4) { target(src, cx) } else { t };
                    (t, DisembargoContext::ReceiverLoopback(id))
                }
                2 => (
                    target(src, cx),
                    DisembargoContext::ReceiverLoopback(u32::from(src.byte() % 4)),
                ),
                3 => (target(src, cx), DisembargoContext::Accept),
                4 => (
                    target(src, cx),
                    DisembargoContext::Provide(pick_id(src, &cx.seen.our_provides)),
                ),
                _ => (
                    target(src, cx),
                    DisembargoContext::SenderLoopback(u32::from(src.byte() % 4)),
                ),
            };
            Message::Disembargo(Disembargo { target, context })
        }
        25..=26 => {
            let question_id = new_question(src, cx.seen);
            remember(&mut cx.seen.our_provides, question_id);
            let nonce = if src.one_in(8) {
                u64::from(src.byte() % 4)
            } else {
                cx.seen.next_nonce += 1;
                cx.seen.next_nonce
            };
            remember(&mut cx.seen.our_nonces, nonce);
            Message::Provide(Provide {
                question_id,
                target: target(src, cx),
                recipient: recipient(src, nonce),
            })
        }
        27..=28 => {
            let question_id = new_question(src, cx.seen);
            let provision = match src.byte() % 4 {
                // A provision the other vat introduced to us with this vat as provider.
                0 | 1 => cx
                    .other_third_party
                    .iter()
                    .filter(|id| id.get(0..4) == Some(&cx.to.to_le_bytes()[..]))
                    .nth(src.below(4))
                    .map(|id| AnyValue::Data(id[4..].to_vec()))
                    .unwrap_or(AnyValue::Null),
                2 => AnyValue::Data(provision_key(
                    other(cx.to),
                    EPOCH,
                    u64::from(src.byte() % 4),
                )),
                _ => value(src, 1, 0),
            };
            Message::Accept(Accept {
                question_id,
                provision,
                embargo: src.bool(),
            })
        }
        29 if depth > 0 => {
            // Echo one of its messages, or something of our own, as not understood.
            let echoed = if !cx.seen.recent.is_empty() && !src.one_in(4) {
                cx.seen.recent[src.below(cx.seen.recent.len())].clone()
            } else {
                message(src, cx, depth - 1)
            };
            Message::Unimplemented(Box::new(echoed))
        }
        30 => Message::Join(Join {
            question_id: new_question(src, cx.seen),
            target: target(src, cx),
            key_part: value(src, 1, 0),
        }),
        31 => {
            if src.bool() {
                Message::ObsoleteSave(value(src, 1, 0))
            } else {
                Message::ObsoleteDelete(value(src, 1, 0))
            }
        }
        _ => Message::Finish(Finish {
            question_id: pick_id(src, &cx.seen.our_questions),
            release_result_caps: true,
            require_early_cancellation_workaround: false,
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// The honest vats and their applications.

#[derive(Default)]
struct App {
    caps: Vec<CapRef>,
    answers: Vec<AnswerRef>,
    /// Calls delivered and not answered yet.
    calls: Vec<CallId>,
    /// Objects this vat hosts (the only ones a `Call` event may name).
    objects: BTreeSet<u64>,
    next_object: u64,
}

struct World<'a> {
    src: Source<'a>,
    vats: [Vat; 2],
    apps: [App; 2],
    /// What the hostile vat knows of Alice (0) and Carol (1).
    seen: [Seen; 2],
    /// Messages on the honest link: Alice to Carol (0), Carol to Alice (1).
    links: [VecDeque<Message>; 2],
    stats: Stats,
    trace: bool,
}

fn index(v: VatId) -> usize {
    if v == ALICE { 0 } else { 1 }
}

fn vat_id(i: usize) -> VatId {
    if i == 0 { ALICE } else { CAROL }
}

impl<'a> World<'a> {
    fn new(data: &'a [u8]) -> Self {
        let config = VatConfig {
            third_party_handoff: true,
            bug: None,
        };
        let mut vats = [
            Vat::new(ALICE, config.clone()),
            Vat::new(CAROL, config.clone()),
        ];
        let mut apps = [App::default(), App::default()];
        for (i, vat) in vats.iter_mut().enumerate() {
            for peer in [ALICE, HOSTILE, CAROL] {
                if peer != vat_id(i) {
                    vat.connect(peer, EPOCH, true);
                }
            }
            let object = (i as u64) << 32;
            apps[i].objects.insert(object);
            apps[i].next_object = object + 1;
            vat.set_bootstrap(object);
        }
        World {
            src: Source { data, pos: 0 },
            vats,
            apps,
            seen: [Seen::new(), Seen::new()],
            links: [VecDeque::new(), VecDeque::new()],
            stats: Stats::default(),
            trace: false,
        }
    }

    /// One step: the operation is the first byte modulo 16.
    fn step(&mut self) {
        match self.src.byte() % 16 {
            // A message the hostile vat builds, to Alice or Carol.
            op @ 0..=6 => {
                let to = if op >= 5 { CAROL } else { ALICE };
                self.maybe_reconnect(to);
                let msg = self.build(to);
                self.hostile_sends(to, Some(msg));
            }
            // A built message with a few bytes of its encoding changed.
            7 => {
                let to = if self.src.bool() { CAROL } else { ALICE };
                self.maybe_reconnect(to);
                let mut bytes = encode(&self.build(to));
                for _ in 0..1 + self.src.below(4) {
                    let at = self.src.below(bytes.len());
                    bytes[at] ^= self.src.byte() | 1;
                }
                let msg = self.decode_hostile(&bytes, false);
                self.hostile_sends(to, msg);
            }
            // Raw bytes: target and reader (bit 0: Carol, bit 1: the stream reader), a
            // two-byte length, the bytes.
            8 => {
                let how = self.src.byte();
                let to = if how & 1 == 1 { CAROL } else { ALICE };
                let len = usize::from(self.src.u16()) % 512;
                let bytes = self.src.bytes(len);
                let msg = self.decode_hostile(&bytes, how & 2 == 2);
                self.hostile_sends(to, msg);
            }
            9..=11 => self.app_step(0),
            12 => self.app_step(1),
            // Deliver on the honest link (bit 0: Carol to Alice), one message or (bit 1) all.
            _ => {
                let how = self.src.byte();
                let link = usize::from(how & 1);
                if how & 2 == 2 {
                    while !self.links[link].is_empty() {
                        self.deliver(link);
                    }
                } else {
                    self.deliver(link);
                }
            }
        }
    }

    /// If the hostile vat's connection to `to` is closed, usually opens a new one (a new
    /// epoch), so that one violation does not end the run.
    fn maybe_reconnect(&mut self, to: VatId) {
        let i = index(to);
        if self.vats[i].is_connected(HOSTILE) || self.src.one_in(4) {
            return;
        }
        let epoch = self.seen[i].epoch + 1;
        self.vats[i].connect(HOSTILE, epoch, true);
        self.seen[i] = Seen {
            epoch,
            ..Seen::default()
        };
    }

    /// Everyone bootstraps everyone, and the honest link is drained.
    fn prologue(&mut self) {
        for to in [ALICE, CAROL] {
            let seen = &mut self.seen[index(to)];
            let question_id = seen.next_question;
            seen.next_question += 1;
            remember(&mut seen.our_questions, question_id);
            let msg = Message::Bootstrap(Bootstrap {
                question_id,
                deprecated_object_id: AnyValue::Null,
            });
            self.hostile_sends(to, Some(msg));
        }
        for i in 0..2 {
            let before: BTreeSet<VatId> = self.vats[i].peers().into_iter().collect();
            for peer in [vat_id(1 - i), HOSTILE] {
                let answer = self.vats[i].bootstrap(peer);
                let cap = self.vats[i].pipeline(&answer, &[]);
                self.keep_cap(i, cap);
                self.keep_answer(i, answer);
            }
            self.collect(i, &before);
        }
        for _ in 0..2 {
            for link in 0..2 {
                while !self.links[link].is_empty() {
                    self.deliver(link);
                }
            }
        }
    }

    fn build(&mut self, to: VatId) -> Message {
        let (mine, theirs) = if to == ALICE {
            let [a, c] = &mut self.seen;
            (a, &*c)
        } else {
            let [a, c] = &mut self.seen;
            (c, &*a)
        };
        let mut cx = Ctx {
            to,
            seen: mine,
            other_nonces: &theirs.our_nonces,
            other_third_party: &theirs.third_party_ids,
            other_epoch: theirs.epoch,
        };
        message(&mut self.src, &mut cx, 2)
    }

    /// Decodes hostile bytes: a typed error, or a message.
    fn decode_hostile(&mut self, bytes: &[u8], stream: bool) -> Option<Message> {
        let result: Result<Message, String> = if stream {
            let mut r = bytes;
            read_message(&mut r).map_err(|e| e.to_string())
        } else {
            decode(bytes).map_err(|e: WireError| e.to_string())
        };
        match result {
            Ok(m) => Some(m),
            Err(e) => {
                assert!(!e.is_empty(), "a wire error without a description");
                self.stats.wire_errors += 1;
                None
            }
        }
    }

    fn hostile_sends(&mut self, to: VatId, msg: Option<Message>) {
        let Some(msg) = msg else { return };
        // Only messages that survive the codec: anything else is not something a peer can
        // send (the generator's capability pointers outside a payload, say).
        let Ok(msg) = decode(&encode(&msg)) else {
            return;
        };
        let kind = msg.kind();
        let copy = msg.clone();
        let result = self.handle(index(to), HOSTILE, msg);
        let ok = result.is_ok();
        match result {
            Ok(()) => self.seen[index(to)].sent(&copy),
            Err(e) => {
                let why: String = e
                    .to_string()
                    .chars()
                    .filter(|c| !c.is_ascii_digit())
                    .collect();
                *self.stats.refused.entry((kind, why)).or_default() += 1;
            }
        }
        *self.stats.handled.entry((kind, ok)).or_default() += 1;
    }

    /// Delivers `msg` from `from` to honest vat `i` and checks the outcome.
    fn handle(&mut self, i: usize, from: VatId, msg: Message) -> Result<(), ProtocolError> {
        let before: BTreeSet<VatId> = self.vats[i].peers().into_iter().collect();
        let was_connected = before.contains(&from);
        let is_abort = matches!(msg, Message::Abort(_));
        let shown = format!("{msg:?}");
        if self.trace {
            eprintln!("{from} -> {}: {shown}", vat_id(i));
        }
        let result = self.vats[i].handle(from, msg);
        let vat = vat_id(i);
        if !was_connected {
            assert_eq!(
                result,
                Err(ProtocolError::Closed),
                "vat {vat}: a message from {from} on a closed connection must be refused as Closed"
            );
            self.quiet(i, "a message on a closed connection");
            return result;
        }
        let aborted = self.collect(i, &before);
        match &result {
            Err(e) => {
                let expected = e.to_exception();
                assert!(
                    !expected.reason.is_empty(),
                    "vat {vat}: error {e:?} has an empty reason"
                );
                assert_eq!(
                    aborted.get(&from),
                    Some(&expected),
                    "vat {vat}: handle({from}, {shown}) failed with {e:?} but the last message \
                     to {from} is not an Abort with its reason"
                );
                assert!(
                    e.is_peer_fault(),
                    "vat {vat}: handle({from}, {shown}) reported an engine fault: {e:?}"
                );
                assert!(
                    !self.vats[i].is_connected(from),
                    "vat {vat}: handle({from}, {shown}) failed with {e:?} but the connection is open"
                );
                // A closed connection refuses everything, quietly.
                let again = self.vats[i].handle(
                    from,
                    Message::Release(Release {
                        id: 0,
                        reference_count: 1,
                    }),
                );
                assert_eq!(
                    again,
                    Err(ProtocolError::Closed),
                    "vat {vat}: a message after the abort must be refused as Closed"
                );
                self.quiet(i, "a message after the abort");
            }
            Ok(()) => {
                assert!(
                    !aborted.contains_key(&from),
                    "vat {vat}: handle({from}, {shown}) returned Ok but aborted the connection \
                     with {:?}",
                    aborted.get(&from)
                );
                if is_abort {
                    assert!(
                        !self.vats[i].is_connected(from),
                        "vat {vat}: the connection to {from} is open after its Abort"
                    );
                }
            }
        }
        result
    }

    /// Checks that vat `i` sent nothing and reported nothing (after refusing a message).
    fn quiet(&mut self, i: usize, what: &str) {
        let vat = vat_id(i);
        let out = self.vats[i].take_outgoing();
        assert!(out.is_empty(), "vat {vat}: {what} made it send {out:?}");
        let events = self.vats[i].take_events();
        assert!(
            events.is_empty(),
            "vat {vat}: {what} produced events {events:?}"
        );
    }

    fn deliver(&mut self, link: usize) {
        let Some(msg) = self.links[link].pop_front() else {
            return;
        };
        // Link 0 carries Alice's messages to Carol.
        let (to, from) = if link == 0 { (1, ALICE) } else { (0, CAROL) };
        if !self.vats[to].is_connected(from) {
            return; // the receiver closed: the message is lost with the connection
        }
        let shown = format!("{msg:?}");
        let result = self.handle(to, from, msg);
        assert!(
            result.is_ok(),
            "vat {} refused {shown} from vat {from}: {result:?} (the hostile vat must not be \
             able to break the honest vats' connection)",
            vat_id(to)
        );
    }

    /// Takes what vat `i` sent and what happened, checks it, and passes it on. `before` is the
    /// set of peers it was connected to when the step began. Returns the connections it
    /// aborted in this step, with the exception of each `Abort`.
    fn collect(&mut self, i: usize, before: &BTreeSet<VatId>) -> BTreeMap<VatId, Exception> {
        let vat = vat_id(i);
        let mut aborted: BTreeMap<VatId, Exception> = BTreeMap::new();
        let mut disconnected = BTreeSet::new();
        // Taking in a call's capabilities may give old ones back (`keep_cap`), which sends
        // more: go on until the vat is quiet.
        loop {
            let out = self.vats[i].take_outgoing();
            let events = self.vats[i].take_events();
            if out.is_empty() && events.is_empty() {
                break;
            }
            for (to, m) in out {
                self.check_sent(i, to, m, before, &mut aborted);
            }
            for ev in events {
                self.check_event(i, ev, before, &aborted, &mut disconnected);
            }
        }
        for peer in before {
            if !self.vats[i].is_connected(*peer) {
                assert!(
                    disconnected.contains(peer),
                    "vat {vat} closed the connection to {peer} without a Disconnected event"
                );
            }
        }
        for peer in aborted.keys() {
            assert!(
                !self.vats[i].is_connected(*peer),
                "vat {vat} sent {peer} an Abort but kept the connection open"
            );
        }
        aborted
    }

    /// One message vat `i` sent to `to`: checked, then passed on.
    fn check_sent(
        &mut self,
        i: usize,
        to: VatId,
        m: Message,
        before: &BTreeSet<VatId>,
        aborted: &mut BTreeMap<VatId, Exception>,
    ) {
        let vat = vat_id(i);
        if self.trace {
            eprintln!("    {vat} -> {to}: {m:?}");
        }
        assert!(
            before.contains(&to) && !aborted.contains_key(&to),
            "vat {vat} sent {m:?} to vat {to} on a closed connection"
        );
        let bytes = encode(&m);
        match decode(&bytes) {
            Ok(back) => assert_eq!(back, m, "vat {vat}: {m:?} does not survive the codec"),
            Err(e) => panic!("vat {vat} sent {m:?}, which does not decode: {e}"),
        }
        *self.stats.sent.entry(m.kind()).or_default() += 1;
        if let Message::Abort(e) = &m {
            assert!(
                !e.reason.is_empty(),
                "vat {vat} aborted {to} without a reason"
            );
            aborted.insert(to, e.clone());
            self.stats.aborts += 1;
        }
        match to {
            HOSTILE => self.seen[i].observe(&m),
            _ => self.links[i].push_back(m),
        }
    }

    /// One event of vat `i`: checked, and a call handed to the application.
    fn check_event(
        &mut self,
        i: usize,
        ev: VatEvent,
        before: &BTreeSet<VatId>,
        aborted: &BTreeMap<VatId, Exception>,
        disconnected: &mut BTreeSet<VatId>,
    ) {
        let vat = vat_id(i);
        if self.trace {
            eprintln!("    {vat} event: {ev:?}");
        }
        match ev {
            VatEvent::Call {
                call, object, caps, ..
            } => {
                assert!(
                    self.apps[i].objects.contains(&object),
                    "vat {vat} delivered a call to object {object}, which it does not host"
                );
                self.stats.app_calls += 1;
                self.apps[i].calls.push(call);
                for c in caps {
                    self.keep_cap(i, c);
                }
            }
            VatEvent::Cancelled { .. } => {}
            VatEvent::Disconnected {
                peer,
                reason,
                by_peer,
            } => {
                assert!(
                    before.contains(&peer) && disconnected.insert(peer),
                    "vat {vat} reported the connection to {peer} lost twice"
                );
                assert!(
                    !self.vats[i].is_connected(peer),
                    "vat {vat} reported the connection to {peer} lost, but it is open"
                );
                if let Some(e) = aborted.get(&peer) {
                    assert!(
                        !by_peer && reason == *e,
                        "vat {vat} aborted {peer} with {e:?} but reported {reason:?}"
                    );
                }
            }
        }
    }

    fn keep_cap(&mut self, i: usize, cap: CapRef) {
        let app = &mut self.apps[i];
        app.caps.push(cap);
        if app.caps.len() > MAX_CAPS {
            let old = app.caps.remove(0);
            self.vats[i].release(old);
        }
    }

    fn keep_answer(&mut self, i: usize, answer: AnswerRef) {
        let app = &mut self.apps[i];
        app.answers.push(answer);
        if app.answers.len() > MAX_ANSWERS {
            let old = app.answers.remove(0);
            self.vats[i].finish(old);
        }
    }

    fn peer_choice(&mut self, i: usize) -> VatId {
        match self.src.byte() % 3 {
            0 => vat_id(1 - i),
            _ => HOSTILE,
        }
    }

    /// Content naming `n` capabilities (as pointer fields 0.., and at the root for one).
    fn content(&mut self, n: usize) -> AnyValue {
        if n == 1 && self.src.bool() {
            return AnyValue::Capability(0);
        }
        AnyValue::Struct(StructValue {
            data: vec![self.src.byte().into()],
            pointers: (0..n as u32).map(AnyValue::Capability).collect(),
        })
    }

    /// Up to `max` capability arguments: held ones, or new local objects.
    fn args(&mut self, i: usize, max: usize) -> Vec<CapRef> {
        let n = self.src.below(max + 1);
        let mut args = Vec::new();
        for _ in 0..n {
            let cap = if self.apps[i].caps.is_empty() || self.src.one_in(4) {
                let object = self.apps[i].next_object;
                self.apps[i].next_object += 1;
                self.apps[i].objects.insert(object);
                self.vats[i].local_cap(object)
            } else {
                let k = self.src.below(self.apps[i].caps.len());
                let cap = &self.apps[i].caps[k];
                self.vats[i].clone_cap(cap)
            };
            args.push(cap);
        }
        args
    }

    fn release_all(&mut self, i: usize, caps: Vec<CapRef>) {
        for c in caps {
            self.vats[i].release(c);
        }
    }

    fn app_step(&mut self, i: usize) {
        let before: BTreeSet<VatId> = self.vats[i].peers().into_iter().collect();
        let ncaps = self.apps[i].caps.len();
        let nanswers = self.apps[i].answers.len();
        let action = self.src.byte() % 16;
        if self.trace {
            eprintln!(
                "app {} action {action} (caps {:?}, answers {:?}, calls {:?})",
                vat_id(i),
                self.apps[i].caps,
                self.apps[i].answers,
                self.apps[i].calls
            );
        }
        match action {
            0 | 1 => {
                let peer = self.peer_choice(i);
                let answer = self.vats[i].bootstrap(peer);
                if self.src.bool() {
                    let cap = self.vats[i].pipeline(&answer, &[]);
                    self.keep_cap(i, cap);
                }
                self.keep_answer(i, answer);
            }
            2..=4 if ncaps > 0 => {
                let k = self.src.below(ncaps);
                let args = self.args(i, 2);
                let content = self.content(args.len());
                let method = u16::from(self.src.byte() % 4);
                let refs: Vec<&CapRef> = args.iter().collect();
                let answer = self.vats[i].call(&self.apps[i].caps[k], 7, method, content, &refs);
                self.release_all(i, args);
                self.keep_answer(i, answer);
            }
            5 if nanswers > 0 => {
                let k = self.src.below(nanswers);
                let path: Vec<u16> = match self.src.byte() % 4 {
                    0 => vec![],
                    1 => vec![0],
                    2 => vec![1],
                    _ => vec![0, 0],
                };
                let cap = self.vats[i].pipeline(&self.apps[i].answers[k], &path);
                self.keep_cap(i, cap);
            }
            6 if nanswers > 0 => {
                let k = self.src.below(nanswers);
                if let Some(Outcome::Results { caps, .. }) =
                    self.vats[i].outcome(&self.apps[i].answers[k])
                {
                    for c in caps {
                        self.keep_cap(i, c);
                    }
                }
            }
            7..=10 if !self.apps[i].calls.is_empty() => {
                let k = self.src.below(self.apps[i].calls.len());
                let call = self.apps[i].calls.remove(k);
                let how = self.src.byte() % 6;
                if self.trace {
                    eprintln!("    answering call {call} (how {how})");
                }
                let result = match how {
                    0 => self.vats[i].return_exception(call, "refused"),
                    1 if nanswers > 0 => {
                        let j = self.src.below(nanswers);
                        self.vats[i].return_answer(call, &self.apps[i].answers[j])
                    }
                    2 if ncaps > 0 => {
                        let j = self.src.below(ncaps);
                        let args = self.args(i, 1);
                        let content = self.content(args.len());
                        let refs: Vec<&CapRef> = args.iter().collect();
                        let r = self.vats[i].tail_call(
                            call,
                            &self.apps[i].caps[j],
                            7,
                            0,
                            content,
                            &refs,
                        );
                        self.release_all(i, args);
                        r
                    }
                    _ => {
                        let args = self.args(i, 3);
                        let content = self.content(args.len());
                        let refs: Vec<&CapRef> = args.iter().collect();
                        let r = self.vats[i].return_results(call, content, &refs);
                        self.release_all(i, args);
                        r
                    }
                };
                assert_eq!(
                    result,
                    Ok(()),
                    "vat {}: answering pending call {call} failed",
                    vat_id(i)
                );
            }
            11 | 12 if ncaps > 0 => {
                let k = self.src.below(ncaps);
                let cap = self.apps[i].caps.remove(k);
                self.vats[i].release(cap);
            }
            13 if nanswers > 0 => {
                let k = self.src.below(nanswers);
                let answer = self.apps[i].answers.remove(k);
                self.vats[i].finish(answer);
            }
            14 => {
                let object = self.apps[i].next_object;
                self.apps[i].next_object += 1;
                self.apps[i].objects.insert(object);
                let cap = self.vats[i].local_cap(object);
                self.keep_cap(i, cap);
            }
            15 if self.src.one_in(8) => {
                let peer = self.peer_choice(i);
                self.vats[i].disconnect(peer, "the application hung up");
            }
            _ => {}
        }
        self.collect(i, &before);
    }

    /// Closes everything, has the applications give everything back, and checks that the
    /// vats then hold nothing.
    fn wind_down(&mut self) {
        for i in 0..2 {
            let before: BTreeSet<VatId> = self.vats[i].peers().into_iter().collect();
            for peer in before.clone() {
                self.vats[i].disconnect(peer, "the run is over");
            }
            self.collect(i, &before);
        }
        for _round in 0..8 {
            let mut busy = false;
            for i in 0..2 {
                let before = BTreeSet::new();
                for call in std::mem::take(&mut self.apps[i].calls) {
                    busy = true;
                    let r = self.vats[i].return_exception(call, "the run is over");
                    assert_eq!(r, Ok(()), "vat {}: answering call {call} failed", vat_id(i));
                }
                for cap in std::mem::take(&mut self.apps[i].caps) {
                    busy = true;
                    self.vats[i].release(cap);
                }
                for answer in std::mem::take(&mut self.apps[i].answers) {
                    busy = true;
                    self.vats[i].finish(answer);
                }
                self.collect(i, &before);
            }
            if !busy {
                break;
            }
        }
        for (i, vat) in self.vats.iter().enumerate() {
            assert_eq!(
                (vat.live_counts(), vat.pending_handoffs()),
                ((0, 0, 0), 0),
                "vat {}: (nodes, results, calls) and handoffs left after everything was closed \
                 and given back",
                vat_id(i)
            );
        }
    }
}
