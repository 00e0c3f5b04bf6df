//! The probe application, written once for every RPC workload (`world.rs`, our vats among
//! themselves; `vs_capnp/`, our vat against capnp-rpc): what one vat's application holds and
//! how it acts.
//!
//! The application objects are probes: each call carries (reference, sequence number), and a
//! call's arrival is recorded with the E-order oracle, which keeps the shadow reference graph
//! (which references designate the same object). An application holds capabilities and
//! answers in numbered slots (storing over a slot gives back what was there), owes the calls
//! that reached its objects, and answers each with the argument, a fresh probe, a held
//! capability, another answer, a tail call, a promise for work handed on, or an exception,
//! never closing a promise cycle (`waits.rs`).
//!
//! What the applications of one run share (the E-order oracle, the calls made so far, what
//! waits for what, the numbering of references) is the [`Ledger`]; what one application does
//! is [`Acting`] (`acting.rs`), one vat's application with the vat and the ledger at hand;
//! the ways it answers a call are [`Answer`] (`answer.rs`).

mod acting;
mod answer;

pub use acting::Acting;
pub use answer::{Answer, Via};

use super::waits::Waits;
use crate::Violation;
use captp::app::Objects;
use captp::{AnswerRef, CallId, CapRef, VatId};
use models::rpc::{EOrder, ShadowId};
use std::collections::BTreeMap;
use std::fmt;

/// Capability and answer slots per application (storing over a slot gives back its old entry).
pub const SLOTS: usize = 6;

/// Where the capability sits in `Probe.call` results (`ProbeReturn.cap`).
pub const CALL_CAP: &[u16] = &[0];
/// Where the capability sits in bootstrap results.
pub const BOOTSTRAP_CAP: &[u16] = &[];

/// The first object number of vat `vat`'s application (its bootstrap probe).
pub fn objects_of(vat: VatId) -> u64 {
    u64::from(vat) << 32
}

/// [`SLOTS`] numbered slots.
pub struct Slots<T>(Vec<Option<T>>);

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots((0..SLOTS).map(|_| None).collect())
    }
}

impl<T> Slots<T> {
    pub fn get(&self, slot: usize) -> Option<&T> {
        self.0[slot].as_ref()
    }

    pub fn get_mut(&mut self, slot: usize) -> Option<&mut T> {
        self.0[slot].as_mut()
    }

    /// Puts `x` in `slot`; returns what was there, for the caller to give back.
    pub fn replace(&mut self, slot: usize, x: T) -> Option<T> {
        self.0[slot].replace(x)
    }

    pub fn take(&mut self, slot: usize) -> Option<T> {
        self.0[slot].take()
    }

    /// The filled slots, in order.
    pub fn filled(&self) -> Vec<usize> {
        (0..SLOTS).filter(|&i| self.0[i].is_some()).collect()
    }

    /// Empties every slot without giving anything back: what they held went with its vat.
    pub fn forget(&mut self) {
        *self = Slots::default();
    }
}

impl<C> Slots<Held<C>> {
    /// Holds `cap` in `slot` under a new reference; returns the reference and what was there,
    /// for the caller to give back.
    pub fn hold(
        &mut self,
        ledger: &mut Ledger,
        slot: usize,
        cap: C,
        shadow: ShadowId,
    ) -> (u64, Option<Held<C>>) {
        let reference = ledger.new_reference();
        (
            reference,
            self.replace(slot, Held::new(cap, reference, shadow)),
        )
    }
}

/// A capability held in a slot: the reference it is called through (a reference's calls are
/// numbered, which is what E-order is about) and its shadow.
pub struct Held<C> {
    pub cap: C,
    pub reference: u64,
    next_seq: u64,
    pub shadow: ShadowId,
}

impl<C> Held<C> {
    pub fn new(cap: C, reference: u64, shadow: ShadowId) -> Self {
        Held {
            cap,
            reference,
            next_seq: 0,
            shadow,
        }
    }

    /// The sequence number of the next call on this reference.
    pub fn next_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }
}

/// What an answer is the answer to, for the trace.
#[derive(Clone, Copy, Debug)]
pub enum AnswerName {
    Call { reference: u64, seq: u64 },
    Bootstrap,
}

impl fmt::Display for AnswerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnswerName::Call { reference, seq } => write!(f, "r{reference}#{seq}"),
            AnswerName::Bootstrap => f.write_str("bootstrap"),
        }
    }
}

/// An answer held in a slot.
pub struct HeldAnswer {
    pub answer: AnswerRef,
    pub name: AnswerName,
    /// Where its results hold a capability: [`CALL_CAP`] or [`BOOTSTRAP_CAP`].
    pub path: &'static [u16],
    /// The shadow of the capability at `path`.
    pub cap_shadow: ShadowId,
}

/// A call made: the shadows of its target, its answer and its argument.
#[derive(Clone, Copy, Debug)]
pub struct CallInfo {
    pub target: ShadowId,
    pub answer: ShadowId,
    pub arg: Option<ShadowId>,
}

/// Call `seq` on `reference` arrived at `object`.
pub struct Arrival {
    pub reference: u64,
    pub seq: u64,
    pub info: CallInfo,
    pub object: u64,
}

/// Two details in which the workloads' applications differ. Each shows in their traces (the
/// first in which answers are refused, the second in the reason a refusal gives), so each
/// workload keeps its own and every seed replays as it did.
#[derive(Clone, Copy, Debug)]
pub struct Habits {
    /// A call's answer also waits for the call's argument (the callee may return it), not
    /// only for its target.
    pub answer_waits_for_arg: bool,
    /// A refusal to settle an answer by one that waits for it says so; otherwise it says
    /// there is nothing to return (or to call).
    pub names_cycles: bool,
}

/// What the applications of one run share: the E-order oracle with its shadow graph, the
/// calls made so far, what waits for what, and the numbering of references.
pub struct Ledger {
    pub eorder: EOrder,
    calls: BTreeMap<(u64, u64), CallInfo>,
    /// What waits for what, to keep promise cycles out of the workload.
    waits: Waits,
    next_reference: u64,
    habits: Habits,
}

impl Ledger {
    pub fn new(habits: Habits) -> Self {
        Ledger {
            eorder: EOrder::new(),
            calls: BTreeMap::new(),
            waits: Waits::default(),
            next_reference: 1,
            habits,
        }
    }

    pub fn new_reference(&mut self) -> u64 {
        let r = self.next_reference;
        self.next_reference += 1;
        r
    }

    /// Records call `seq` on `reference` and returns the shadow of its answer, which waits for
    /// the call's target (and, by habit, its argument). A fresh answer: nothing waits for it
    /// yet, so this closes no cycle.
    pub fn new_call(
        &mut self,
        reference: u64,
        seq: u64,
        target: ShadowId,
        arg: Option<ShadowId>,
    ) -> ShadowId {
        let answer = self.eorder.unknown();
        self.waits.add(answer, target);
        if let Some(a) = arg.filter(|_| self.habits.answer_waits_for_arg) {
            self.waits.add(answer, a);
        }
        self.calls.insert(
            (reference, seq),
            CallInfo {
                target,
                answer,
                arg,
            },
        );
        answer
    }

    /// The call `seq` on `reference`, if it was ever made.
    pub fn call(&self, reference: u64, seq: u64) -> Option<CallInfo> {
        self.calls.get(&(reference, seq)).copied()
    }

    /// Records that `answer` now waits for `awaited`, unless that would close a cycle;
    /// returns whether it was recorded.
    fn follow(&mut self, answer: ShadowId, awaited: ShadowId) -> bool {
        self.waits.follow(&mut self.eorder, answer, awaited)
    }

    /// The reason for refusing to settle an answer by something that waits for it.
    fn refusal(&self, cycle: &'static str, otherwise: &'static str) -> &'static str {
        if self.habits.names_cycles {
            cycle
        } else {
            otherwise
        }
    }
}

/// Where an application's trace lines and violations go.
pub trait Journal {
    /// A trace line about what an application did (ignored by workloads whose traces leave
    /// the applications out).
    fn narrate(&mut self, line: fmt::Arguments<'_>);
    /// A problem an oracle found.
    fn violation(&mut self, oracle: &'static str, msg: String);
}

/// A plain list of violations, with no trace lines.
impl Journal for Vec<Violation> {
    fn narrate(&mut self, _: fmt::Arguments<'_>) {}

    fn violation(&mut self, oracle: &'static str, msg: String) {
        self.push(Violation::new(oracle, msg));
    }
}

/// A call that reached one of the application's objects and is not answered yet.
struct Owed {
    call: CallId,
    /// The call's `(ref, seq)`, for the trace.
    name: (u64, u64),
    /// How many calls reached the object before this one (`ProbeReturn.n`).
    earlier: u64,
    arg: Option<(CapRef, ShadowId)>,
    answer_shadow: ShadowId,
}

/// One vat's probe application.
pub struct ProbeApp {
    vat: VatId,
    pub caps: Slots<Held<CapRef>>,
    pub answers: Slots<HeldAnswer>,
    owed: Vec<Owed>,
    objects: Objects,
    /// Calls that reached each of its objects so far.
    arrivals: BTreeMap<u64, u64>,
    /// The slot it called last: applications call the same capability again and again, and
    /// E-order is about such runs of calls.
    pub last_called: Option<usize>,
}

impl ProbeApp {
    pub fn new(vat: VatId) -> Self {
        ProbeApp {
            vat,
            caps: Slots::default(),
            answers: Slots::default(),
            owed: Vec::new(),
            objects: Objects::new(objects_of(vat)),
            arrivals: BTreeMap::new(),
            last_called: None,
        }
    }

    /// Its bootstrap object (for `Vat::set_bootstrap`).
    pub fn bootstrap_object(&self) -> u64 {
        self.objects.bootstrap()
    }

    /// Forgets everything its vat held, after the vat restarted with no state. Its objects'
    /// numbering goes on (a new object is never taken for one from before the restart), and
    /// so do the counts of calls that reached them.
    pub fn reset(&mut self) {
        self.caps.forget();
        self.answers.forget();
        self.owed.clear();
        self.last_called = None;
    }

    /// Whether it owes any call.
    pub fn owes(&self) -> bool {
        !self.owed.is_empty()
    }

    /// How many calls it owes.
    pub fn owed(&self) -> usize {
        self.owed.len()
    }
}
