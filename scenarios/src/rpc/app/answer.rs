//! How a probe application answers a call it owes: with the argument or a fresh probe, a
//! held capability, another answer, a tail call, a promise for work handed on, or an
//! exception; never settling an answer by something that waits for it (a promise cycle).

use super::{Acting, CALL_CAP, CallInfo, Journal, Owed, SLOTS};
use captp::app::Reply;
use captp::probe::{CALL_METHOD, PROBE_INTERFACE_ID, ProbeCall, ProbeReturn};
use captp::wire::AnyValue;
use captp::{CapRef, ProtocolError};
use models::rpc::ShadowId;

/// To whom an application hands work on (`Answer::HandOn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// A fresh helper probe of its own.
    Helper,
    /// The capability in the slot named (a fresh helper if that slot is empty).
    Held,
}

/// How an application answers a call it owes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Results with the call's argument, or a fresh probe if it brought none.
    Argument,
    /// A promise for the argument (the work handed on with it) if the call brought one,
    /// otherwise as `Argument`.
    PromiseForArgument(Via),
    /// Results with a copy of the capability in the slot named.
    Held,
    /// The results of the call answer in the slot named, when they come (a promise).
    Follow,
    /// A tail call on the capability in the slot named.
    TailCall,
    /// Hand the work (and the argument) on and return a pipeline on that call's answer: the
    /// caller holds a promise this vat hosts, which settles when the handed-on call does,
    /// often into a capability of the caller's own after the caller has already pipelined
    /// calls through it (mirage/capnp-rpc#78's shape, and #59's when the handed-on call goes
    /// to a third vat).
    HandOn(Via),
    /// An exception.
    Exception,
}

impl Answer {
    /// How the trace names it (`has_arg`: whether the call brought an argument).
    fn describe(self, has_arg: bool) -> &'static str {
        match (self, has_arg) {
            (Answer::Argument, true) => "the argument",
            (Answer::Argument, false) => "a fresh probe",
            (Answer::Held, _) => "a held capability",
            (Answer::Follow, _) => "another answer",
            (Answer::TailCall, _) => "a tail call",
            (Answer::HandOn(_), _) => "a promise for work handed on",
            (Answer::PromiseForArgument(_), _) => "a promise for the argument",
            (Answer::Exception, _) => "an exception",
        }
    }
}

impl<J: Journal> Acting<'_, J> {
    /// Answers the call at `index` (modulo how many it owes), as `how` says; `slot` names the
    /// capability or answer the answer uses.
    pub fn answer(&mut self, index: usize, how: Answer, slot: usize) {
        if self.app.owed.is_empty() {
            return;
        }
        let len = self.app.owed.len();
        let mut owed = self.app.owed.remove(index % len);
        let how = match how {
            Answer::PromiseForArgument(via) if owed.arg.is_some() => Answer::HandOn(via),
            Answer::PromiseForArgument(_) => Answer::Argument,
            how => how,
        };
        let results = ProbeReturn {
            n: owed.earlier,
            cap: Some(0),
        }
        .to_value();
        // Only the answers that return the argument or hand it on keep it; every other
        // answer gives it back first.
        let arg = match (how, owed.arg.take()) {
            (Answer::Argument | Answer::HandOn(_), arg) => arg,
            (_, Some((cap, _))) => {
                self.vat.release(cap);
                None
            }
            (_, None) => None,
        };
        self.journal.narrate(format_args!(
            "{} answers r{}#{} with {}",
            self.app.vat,
            owed.name.0,
            owed.name.1,
            how.describe(arg.is_some())
        ));
        let result = match how {
            Answer::Argument => {
                let (cap, shadow) = match arg {
                    Some(arg) => arg,
                    None => self.fresh_object(),
                };
                self.return_cap(&owed, results, cap, shadow)
            }
            Answer::Held => {
                let held = self
                    .app
                    .caps
                    .get(slot)
                    .map(|h| (h.shadow, self.vat.clone_cap(&h.cap)));
                match held {
                    Some((shadow, cap)) => self.return_cap(&owed, results, cap, shadow),
                    None => Reply::Exception("no capability to return").send(self.vat, owed.call),
                }
            }
            Answer::Follow => self.return_answer(&owed, slot),
            Answer::TailCall => self.tail_call(&owed, slot),
            Answer::HandOn(via) => self.hand_on(&owed, results, arg, via, slot),
            Answer::PromiseForArgument(_) => unreachable!("resolved above"),
            Answer::Exception => Reply::Exception("probe refused").send(self.vat, owed.call),
        };
        if let Err(e) = result {
            self.journal.violation(
                "rpc-app",
                format!("vat {}: answering a call failed: {e}", self.app.vat),
            );
        }
    }

    /// Returns `cap` (given back after) as the capability in the results of `owed`, unless
    /// it is a promise waiting for that very answer (a cycle no vat would ever settle).
    fn return_cap(
        &mut self,
        owed: &Owed,
        results: AnyValue,
        cap: CapRef,
        shadow: ShadowId,
    ) -> Result<(), ProtocolError> {
        let ledger = &mut *self.ledger;
        if ledger
            .waits
            .waits_for(&mut ledger.eorder, shadow, owed.answer_shadow)
        {
            let r =
                Reply::Exception("that capability waits for this answer").send(self.vat, owed.call);
            self.vat.release(cap);
            r
        } else {
            ledger
                .eorder
                .unify(owed.answer_shadow, shadow, "returned capability");
            Reply::Results {
                content: results,
                caps: vec![cap],
            }
            .send(self.vat, owed.call)
        }
    }

    /// Settles `owed` with the results of the call answer in `slot` (only a call's: a
    /// bootstrap's results are not `Probe.call` results).
    fn return_answer(&mut self, owed: &Owed, slot: usize) -> Result<(), ProtocolError> {
        let followed = self
            .app
            .answers
            .get(slot)
            .filter(|a| a.path == CALL_CAP)
            .map(|a| a.cap_shadow);
        let reason = match followed {
            Some(f) if self.ledger.follow(owed.answer_shadow, f) => {
                self.ledger
                    .eorder
                    .unify(owed.answer_shadow, f, "returned answer");
                let Some(a) = self.app.answers.get(slot) else {
                    unreachable!("the slot was just read");
                };
                return Reply::Answer(&a.answer).send(self.vat, owed.call);
            }
            Some(_) => self
                .ledger
                .refusal("that answer waits for this one", "no answer to return"),
            None => "no answer to return",
        };
        Reply::Exception(reason).send(self.vat, owed.call)
    }

    /// Settles `owed` by a tail call on the capability in `slot`.
    fn tail_call(&mut self, owed: &Owed, slot: usize) -> Result<(), ProtocolError> {
        let followed = self.app.caps.get(slot).map(|h| h.shadow);
        let reason = match followed {
            Some(f) if self.ledger.follow(owed.answer_shadow, f) => {
                let Some(h) = self.app.caps.get_mut(slot) else {
                    unreachable!("the slot was just read");
                };
                let (reference, seq) = (h.reference, h.next_seq());
                // Its answer is the owed one, which already waits for the target.
                self.ledger.calls.insert(
                    (reference, seq),
                    CallInfo {
                        target: h.shadow,
                        answer: owed.answer_shadow,
                        arg: None,
                    },
                );
                self.journal.narrate(format_args!(
                    "{} tail-calls r{reference}#{seq}",
                    self.app.vat
                ));
                let content = ProbeCall {
                    ref_id: reference,
                    seq,
                    arg: None,
                }
                .to_value();
                return Reply::TailCall {
                    target: &h.cap,
                    interface_id: PROBE_INTERFACE_ID,
                    method_id: CALL_METHOD,
                    content,
                    caps: Vec::new(),
                }
                .send(self.vat, owed.call);
            }
            Some(_) => self.ledger.refusal(
                "that capability waits for this answer",
                "no capability to call",
            ),
            None => "no capability to call",
        };
        Reply::Exception(reason).send(self.vat, owed.call)
    }

    /// Hands the work (and the argument) on to the capability in `slot` or a fresh helper,
    /// and settles `owed` with a pipeline on that call's answer (see `Answer::HandOn`).
    fn hand_on(
        &mut self,
        owed: &Owed,
        results: AnyValue,
        arg: Option<(CapRef, ShadowId)>,
        via: Via,
        slot: usize,
    ) -> Result<(), ProtocolError> {
        let (arg_slot, answer_slot) = ((slot + 1) % SLOTS, (slot + 2) % SLOTS);
        if via == Via::Helper || self.app.caps.get(slot).is_none() {
            let (cap, shadow) = self.fresh_object();
            self.store_cap(slot, cap, shadow, format_args!("a helper probe"));
        }
        let has_arg = arg.is_some();
        if let Some((cap, shadow)) = arg {
            let (reference, seq) = owed.name;
            self.store_cap(
                arg_slot,
                cap,
                shadow,
                format_args!("the argument of r{reference}#{seq}"),
            );
        }
        self.call(slot, has_arg.then_some(arg_slot), answer_slot);
        let promise = self
            .app
            .answers
            .get(answer_slot)
            .map(|a| (a.cap_shadow, self.vat.pipeline(&a.answer, a.path)));
        match promise {
            Some((shadow, promise)) => self.return_cap(owed, results, promise, shadow),
            None => Reply::Exception("no call to hand the work on to").send(self.vat, owed.call),
        }
    }
}
