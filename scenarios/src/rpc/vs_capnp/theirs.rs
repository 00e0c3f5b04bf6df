//! capnp-rpc's side: its vat (a new incarnation per connection: an `RpcSystem` serves one
//! connection), and what its driver holds in slots like our application's. Its probe objects
//! answer every call at once, with the argument or a fresh probe; what they saw is read from
//! its arrival log. Everything run on it is guarded: a panic inside capnp-rpc is a finding,
//! and the vat is given up.

use super::THEIRS;
use super::blame::{Evidence, Judge, Kind};
use crate::rpc::app::{AnswerName, Arrival, Held, Ledger, Slots};
use crate::rpc::link::InFlight;
use capnp_peer::{AnswerHandle, Answered, CapHandle, CapnpRpcVat, VatError};
use models::rpc::ShadowId;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Objects of capnp-rpc's incarnation `inc`, numbered by the probe registry of that
/// incarnation.
fn their_object(inc: u64, n: u64) -> u64 {
    (u64::from(THEIRS) << 32) | (inc << 20) | n
}

/// The message of a caught panic.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a panic without a message)".into())
}

struct TheirAnswer {
    handle: AnswerHandle,
    name: AnswerName,
    cap_shadow: ShadowId,
    /// Whether its returned capability was already taken (capnp-peer hands out one handle).
    taken: bool,
}

pub struct TheirSide {
    vat: CapnpRpcVat,
    /// Its incarnation (one per connection).
    incarnation: u64,
    /// It panicked (the message); it is given up (`Duel::reconnect`) right after.
    panic: Option<String>,
    caps: Slots<Held<CapHandle>>,
    answers: Slots<TheirAnswer>,
    /// How much of its arrival log the oracles have seen.
    seen: usize,
}

impl TheirSide {
    pub fn new() -> Self {
        TheirSide {
            vat: CapnpRpcVat::new(true),
            incarnation: 0,
            panic: None,
            caps: Slots::default(),
            answers: Slots::default(),
            seen: 0,
        }
    }

    /// Its object `n` in this incarnation.
    pub fn object(&self, n: u64) -> u64 {
        their_object(self.incarnation, n)
    }

    pub fn panicked(&self) -> bool {
        self.panic.is_some()
    }

    /// Why it shut the connection down, if it did.
    pub fn abort_reason(&self) -> Option<String> {
        self.vat.abort_reason()
    }

    pub fn is_closed(&self) -> bool {
        self.vat.is_closed()
    }

    pub fn filled_caps(&self) -> Vec<usize> {
        self.caps.filled()
    }

    pub fn filled_answers(&self) -> Vec<usize> {
        self.answers.filled()
    }

    /// Runs `f` on capnp-rpc's vat. A panic inside capnp-rpc is a finding (a peer must not
    /// panic on any input or driver call); the vat is then given up and nothing more runs on
    /// it.
    fn guarded<R>(
        &mut self,
        judge: &mut Judge,
        what: &str,
        f: impl FnOnce(&mut CapnpRpcVat) -> R,
    ) -> Option<R> {
        if self.panic.is_some() {
            return None;
        }
        let vat = &mut self.vat;
        match catch_unwind(AssertUnwindSafe(move || f(vat))) {
            Ok(r) => Some(r),
            Err(p) => {
                let text = panic_text(&*p);
                judge.finding(Kind::Panic, format!("capnp-rpc panicked {what}: {text}"));
                self.panic = Some(text);
                None
            }
        }
    }

    /// Runs it until it has nothing left to do.
    pub fn run(&mut self, judge: &mut Judge) {
        self.guarded(judge, "running", |t| {
            t.run_until_stalled();
        });
    }

    /// Hands it a message, and runs it.
    pub fn deliver(&mut self, judge: &mut Judge, bytes: Vec<u8>) {
        self.guarded(judge, "handling a message", |t| {
            t.deliver(bytes);
            t.run_until_stalled();
        });
    }

    /// What it sent, as it framed it.
    pub fn outgoing(&mut self, judge: &mut Judge) -> Vec<InFlight> {
        self.guarded(judge, "sending", CapnpRpcVat::take_outgoing)
            .unwrap_or_default()
            .into_iter()
            .map(InFlight::new)
            .collect()
    }

    /// Feeds the calls that reached its probe objects to the E-order oracle, and follows
    /// what each object returned in the shadow graph.
    pub fn feed_arrivals(
        &mut self,
        ledger: &mut Ledger,
        judge: &mut Judge,
        evidence: &Evidence<'_>,
    ) {
        let log = self.vat.arrival_log(self.seen);
        self.seen += log.len();
        for a in log {
            let object = self.object(a.object);
            let Some(info) = ledger.call(a.ref_id, a.seq) else {
                judge.violation(
                    "e-order",
                    format!(
                        "call #{} on reference {} was never made (arrived at capnp-rpc's \
                         object {object:#x})",
                        a.seq, a.ref_id
                    ),
                );
                continue;
            };
            let arrival = Arrival {
                reference: a.ref_id,
                seq: a.seq,
                info,
                object,
            };
            judge.arrived(&mut ledger.eorder, evidence, &arrival, THEIRS);
            let returned = match a.answered {
                Answered::Arg => info.arg,
                Answered::Fresh(n) => Some(ledger.eorder.object(self.object(n))),
                Answered::Failed => None,
            };
            if let Some(s) = returned {
                let before = ledger.eorder.violations().len();
                ledger
                    .eorder
                    .unify(info.answer, s, "capnp-rpc's returned capability");
                let found: Vec<String> = ledger.eorder.violations()[before..]
                    .iter()
                    .map(|v| v.message.clone())
                    .collect();
                for msg in found {
                    judge.violation("e-order", msg);
                }
            }
        }
    }

    /// A driver action (guarded). capnp-peer refusing it means the driver named a handle it
    /// does not hold: a fault of this workload, so a violation.
    fn drive<R>(
        &mut self,
        judge: &mut Judge,
        what: &str,
        f: impl FnOnce(&mut CapnpRpcVat) -> Result<R, VatError>,
    ) -> Option<R> {
        match self.guarded(judge, what, f)? {
            Ok(r) => Some(r),
            Err(e) => {
                judge.violation("rpc-app", format!("vat 1 driver: {e}"));
                None
            }
        }
    }

    fn release(&mut self, judge: &mut Judge, handle: CapHandle) {
        self.drive(judge, "releasing", |t| t.release(handle));
    }

    fn drop_answer(&mut self, judge: &mut Judge, handle: AnswerHandle) {
        self.drive(judge, "dropping an answer", |t| t.drop_answer(handle));
    }

    /// Releases the capability in `slot`.
    pub fn release_slot(&mut self, judge: &mut Judge, slot: usize) {
        if let Some(old) = self.caps.take(slot) {
            self.release(judge, old.cap);
        }
    }

    /// Drops the answer in `slot`.
    pub fn drop_slot(&mut self, judge: &mut Judge, slot: usize) {
        if let Some(old) = self.answers.take(slot) {
            self.drop_answer(judge, old.handle);
        }
    }

    /// Its driver, acting, with the run's ledger and the judge at hand.
    pub fn acting<'a>(
        &'a mut self,
        ledger: &'a mut Ledger,
        judge: &'a mut Judge,
    ) -> TheirActing<'a> {
        TheirActing {
            side: self,
            ledger,
            judge,
        }
    }

    /// Closes this incarnation (its side of the connection is cut and run until it has torn
    /// everything down) and starts the next, holding nothing.
    pub fn renew(&mut self, ledger: &mut Ledger, judge: &mut Judge, evidence: &Evidence<'_>) {
        if self.panic.is_none() {
            self.guarded(judge, "closing", |t| {
                t.disconnect();
                t.run_until_stalled();
            });
            self.feed_arrivals(ledger, judge, evidence);
            let closed = self.vat.closed();
            judge.note(format!("capnp-rpc closed: {closed:?}"));
        }
        let panicked = self.panic.take().is_some();
        let old = std::mem::replace(&mut self.vat, CapnpRpcVat::new(true));
        if let Err(p) = catch_unwind(AssertUnwindSafe(move || drop(old)))
            && !panicked
        {
            judge.finding(
                Kind::Panic,
                format!("capnp-rpc panicked while dropped: {}", panic_text(&*p)),
            );
        }
        self.incarnation += 1;
        self.seen = 0;
        self.caps.forget();
        self.answers.forget();
    }
}

/// capnp-rpc's driver acting, as our application does (`Acting`): it holds what it is given
/// in slots under new references, and its calls are recorded in the ledger.
pub struct TheirActing<'a> {
    side: &'a mut TheirSide,
    ledger: &'a mut Ledger,
    judge: &'a mut Judge,
}

impl TheirActing<'_> {
    /// Stores a capability in a slot (under a new reference), releasing what was there.
    fn store_cap(
        &mut self,
        slot: usize,
        handle: CapHandle,
        shadow: ShadowId,
        what: fmt::Arguments<'_>,
    ) {
        let (reference, old) = self.side.caps.hold(self.ledger, slot, handle, shadow);
        self.judge
            .note(format!("{THEIRS} holds r{reference}: {what}"));
        if let Some(old) = old {
            self.side.release(self.judge, old.cap);
        }
    }

    /// Calls the capability in `slot` with the one in `arg` (if any).
    pub fn call(&mut self, slot: usize, arg: Option<usize>, answer_slot: usize) {
        let side = &mut *self.side;
        let Some(held) = side.caps.get_mut(slot) else {
            return;
        };
        let (reference, seq, target, handle) =
            (held.reference, held.next_seq(), held.shadow, held.cap);
        let arg = arg.and_then(|a| side.caps.get(a).map(|h| (h.cap, h.shadow)));
        let answer = self
            .ledger
            .new_call(reference, seq, target, arg.map(|(_, s)| s));
        self.judge.note(format!(
            "{THEIRS} calls r{reference}#{seq}{}",
            if arg.is_some() {
                " with a capability"
            } else {
                ""
            }
        ));
        let called = side.drive(self.judge, "calling", |t| {
            t.call(handle, reference, seq, arg.map(|(h, _)| h))
        });
        if let Some(a) = called {
            let old = side.answers.replace(
                answer_slot,
                TheirAnswer {
                    handle: a,
                    name: AnswerName::Call { reference, seq },
                    cap_shadow: answer,
                    taken: false,
                },
            );
            if let Some(old) = old {
                side.drop_answer(self.judge, old.handle);
            }
        }
    }

    /// Takes the capability out of a returned answer.
    pub fn take(&mut self, slot: usize, into: usize) {
        let Some(a) = self.side.answers.get(slot) else {
            return;
        };
        if a.taken {
            return;
        }
        let (handle, shadow, name) = (a.handle, a.cap_shadow, a.name);
        let polled = self
            .side
            .drive(self.judge, "taking results", |t| t.poll_answer(handle));
        // Only results hold a capability to take (not an exception, nor an answer not back).
        if let Some(Some(Ok((_, cap)))) = polled {
            if let Some(a) = self.side.answers.get_mut(slot) {
                a.taken = true;
            }
            self.store_cap(into, cap, shadow, format_args!("the results of {name}"));
        }
    }

    /// Pipelines on the answer in `slot`, keeping the capability in `into`.
    pub fn pipeline(&mut self, slot: usize, into: usize) {
        let Some(a) = self.side.answers.get(slot) else {
            return;
        };
        let (shadow, handle, name) = (a.cap_shadow, a.handle, a.name);
        let piped = self
            .side
            .drive(self.judge, "pipelining", |t| t.pipeline_cap(handle));
        if let Some(cap) = piped {
            self.store_cap(into, cap, shadow, format_args!("a pipeline on {name}"));
        }
    }

    /// Bootstraps our vat, whose bootstrap object is `ours`, keeping the capability in `into`.
    pub fn bootstrap(&mut self, ours: u64, into: usize) {
        let cap = self
            .side
            .guarded(self.judge, "bootstrapping", CapnpRpcVat::bootstrap);
        if let Some(cap) = cap {
            let shadow = self.ledger.eorder.object(ours);
            self.store_cap(into, cap, shadow, format_args!("the peer's bootstrap"));
        }
    }

    /// Calls the capability in `slot` with a fresh local probe, kept in `arg` too.
    pub fn call_with_probe(&mut self, slot: usize, arg: usize, into: usize) {
        let probe = self.side.guarded(
            self.judge,
            "making a probe",
            CapnpRpcVat::local_probe_with_id,
        );
        if let Some((cap, n)) = probe {
            let shadow = self.ledger.eorder.object(self.side.object(n));
            self.store_cap(arg, cap, shadow, format_args!("a fresh local probe"));
            self.call(slot, Some(arg), into);
        }
    }
}
