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
//!   [`ProtocolError::Closed`](crate::ProtocolError::Closed) without sending anything; the
//!   error is the peer's fault;
//! - `handle` returning `Ok` means the vat did not abort that peer;
//! - any other connection a vat closes during a step also ends with an `Abort` carrying a
//!   reason (or, for the application's own `disconnect`, none), and a `Disconnected` event;
//! - Alice and Carol accept every message they send each other: the hostile vat cannot make
//!   them break their own connection;
//! - at the end, once every connection is closed and the application has given everything
//!   back, the vats hold nothing (no capability, answer, local call or handoff left over).
//!
//! Files: `source.rs` reads the program, `seen.rs` and `messages.rs` build the hostile vat's
//! messages, `honest.rs` is the honest vats' application, `checks.rs` checks the property.

mod checks;
mod honest;
mod messages;
mod seen;
mod source;

use crate::stream::read_message;
use crate::vat::{Vat, VatConfig, VatId};
use crate::wire::{AnyValue, Bootstrap, Message, WireError, decode, encode};
use honest::App;
use messages::{Ctx, message};
use seen::{Seen, remember};
use source::Source;
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

/// The two honest vats, their applications, what the hostile vat knows of them and the link
/// between them.
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
        let apps = [App::new(0), App::new(1 << 32)];
        for (i, vat) in vats.iter_mut().enumerate() {
            for peer in [ALICE, HOSTILE, CAROL] {
                if peer != vat_id(i) {
                    vat.connect(peer, EPOCH, true);
                }
            }
            vat.set_bootstrap(apps[i].objects().bootstrap());
        }
        World {
            src: Source::new(data),
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
                self.apps[i].keep_cap(&mut self.vats[i], cap);
                self.apps[i].keep_answer(&mut self.vats[i], answer);
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
                busy |= self.apps[i].give_back(&mut self.vats[i], vat_id(i));
                self.collect(i, &BTreeSet::new());
            }
            if !busy {
                break;
            }
        }
        self.check_nothing_left();
    }
}
