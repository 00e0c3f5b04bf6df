//! What one vat's probe application does: store what it is given, call, pipeline, take
//! results, bootstrap, give back, and take the calls that reach its objects, each checked
//! against the calls made and owed until answered (`answer.rs`).

use super::{
    AnswerName, Arrival, BOOTSTRAP_CAP, CALL_CAP, HeldAnswer, Journal, Ledger, Owed, ProbeApp,
    SLOTS,
};
use captp::app::Reply;
use captp::probe::{CALL_METHOD, PROBE_INTERFACE_ID, ProbeCall};
use captp::{AnswerRef, CallId, CapRef, Outcome, Vat, VatEvent, VatId};
use models::rpc::ShadowId;
use simkit::Ctx;
use std::fmt;

/// One vat's application acting, with its vat, the run's ledger and where its lines go.
pub struct Acting<'a, J> {
    pub vat: &'a mut Vat,
    pub app: &'a mut ProbeApp,
    pub ledger: &'a mut Ledger,
    pub journal: &'a mut J,
}

impl<J: Journal> Acting<'_, J> {
    /// A capability to a fresh probe object of its own, and its shadow.
    pub fn fresh_object(&mut self) -> (CapRef, ShadowId) {
        let (object, cap) = self.app.objects.fresh(self.vat);
        (cap, self.ledger.eorder.object(object))
    }

    /// Stores a capability in a slot (under a new reference), giving back what was there;
    /// `what` says for the trace what it is.
    pub fn store_cap(
        &mut self,
        slot: usize,
        cap: CapRef,
        shadow: ShadowId,
        what: fmt::Arguments<'_>,
    ) {
        let (reference, old) = self.app.caps.hold(self.ledger, slot, cap, shadow);
        self.journal
            .narrate(format_args!("{} holds r{reference}: {what}", self.app.vat));
        if let Some(old) = old {
            self.vat.release(old.cap);
        }
    }

    /// Stores an answer in a slot, finishing what was there.
    pub fn store_answer(&mut self, slot: usize, answer: HeldAnswer) {
        if let Some(old) = self.app.answers.replace(slot, answer) {
            self.vat.finish(old.answer);
        }
    }

    /// Calls the capability in `slot`, with the capability in `arg` (if any), keeping the
    /// answer in `answer_slot`.
    pub fn call(&mut self, slot: usize, arg: Option<usize>, answer_slot: usize) {
        let Some(held) = self.app.caps.get_mut(slot) else {
            return;
        };
        let (reference, seq, target) = (held.reference, held.next_seq(), held.shadow);
        self.app.last_called = Some(slot);
        let arg = arg.and_then(|a| self.app.caps.get(a));
        let answer = self
            .ledger
            .new_call(reference, seq, target, arg.map(|h| h.shadow));
        self.journal.narrate(format_args!(
            "{} calls r{reference}#{seq}{}",
            self.app.vat,
            if arg.is_some() {
                " with a capability"
            } else {
                ""
            }
        ));
        let Some(held) = self.app.caps.get(slot) else {
            return;
        };
        let caps: Vec<&CapRef> = arg.map(|h| &h.cap).into_iter().collect();
        let params = ProbeCall {
            ref_id: reference,
            seq,
            arg: (!caps.is_empty()).then_some(0),
        }
        .to_value();
        let a = self
            .vat
            .call(&held.cap, PROBE_INTERFACE_ID, CALL_METHOD, params, &caps);
        self.store_answer(
            answer_slot,
            HeldAnswer {
                answer: a,
                name: AnswerName::Call { reference, seq },
                path: CALL_CAP,
                cap_shadow: answer,
            },
        );
    }

    /// Pipelines on the answer in `slot`, keeping the capability in `into`; false if there is
    /// no answer there.
    pub fn pipeline(&mut self, slot: usize, into: usize) -> bool {
        let Some(a) = self.app.answers.get(slot) else {
            return false;
        };
        let (shadow, name) = (a.cap_shadow, a.name);
        let cap = self.vat.pipeline(&a.answer, a.path);
        self.store_cap(into, cap, shadow, format_args!("a pipeline on {name}"));
        true
    }

    /// Takes the capability out of the answer in `slot`, if it has returned, into `into`.
    pub fn take(&mut self, slot: usize, into: usize) {
        let Some(a) = self.app.answers.get(slot) else {
            return;
        };
        let (path, shadow, name) = (a.path, a.cap_shadow, a.name);
        let Some(Outcome::Results { content, mut caps }) = self.vat.outcome(&a.answer) else {
            return;
        };
        let cap = match content.cap_index_at(path).map(|i| i as usize) {
            Some(i) if i < caps.len() => Some(caps.remove(i)),
            _ => None,
        };
        for c in caps {
            self.vat.release(c);
        }
        if let Some(cap) = cap {
            self.store_cap(into, cap, shadow, format_args!("the results of {name}"));
        }
    }

    /// Bootstraps `peer`, whose bootstrap object is `object`, holding the capability in
    /// `into`; returns the bootstrap answer (to keep or finish) and its capability's shadow.
    pub fn bootstrap(&mut self, peer: VatId, object: u64, into: usize) -> (AnswerRef, ShadowId) {
        let answer = self.vat.bootstrap(peer);
        let shadow = self.ledger.eorder.object(object);
        let cap = self.vat.pipeline(&answer, BOOTSTRAP_CAP);
        self.store_cap(into, cap, shadow, format_args!("the peer's bootstrap"));
        (answer, shadow)
    }

    /// Keeps a bootstrap answer in `slot` (its results hold the capability).
    pub fn keep_bootstrap(&mut self, slot: usize, answer: AnswerRef, shadow: ShadowId) {
        self.store_answer(
            slot,
            HeldAnswer {
                answer,
                name: AnswerName::Bootstrap,
                path: BOOTSTRAP_CAP,
                cap_shadow: shadow,
            },
        );
    }

    /// Releases the capability in `slot`.
    pub fn release(&mut self, slot: usize) {
        if let Some(old) = self.app.caps.take(slot) {
            self.vat.release(old.cap);
        }
    }

    /// Finishes the answer in `slot`.
    pub fn finish(&mut self, slot: usize) {
        if let Some(old) = self.app.answers.take(slot) {
            self.vat.finish(old.answer);
        }
    }

    /// Gives back every capability and answer, slot by slot.
    pub fn give_back(&mut self) {
        for slot in 0..SLOTS {
            self.release(slot);
            self.finish(slot);
        }
    }

    /// Hands the vat's calls to the application: each is checked against the calls made,
    /// reported to `arrived` (the E-order oracle, or a workload's own account of it) and
    /// owed. With a `keep`, half the time the object keeps a copy of the capability it was
    /// given, for its vat to call or pass on later: capabilities passed along are what carry
    /// calls through a third vat.
    pub fn take_calls(
        &mut self,
        keep: Option<&Ctx>,
        mut arrived: impl FnMut(&mut Ledger, &mut J, &Arrival),
    ) {
        for ev in self.vat.take_events() {
            let VatEvent::Call {
                call,
                object,
                content,
                caps,
                ..
            } = ev
            else {
                continue;
            };
            let p = match ProbeCall::from_value(&content) {
                Ok(p) => p,
                Err(_) => {
                    let msg = format!(
                        "vat {}: a call arrived with a malformed payload",
                        self.app.vat
                    );
                    self.refuse(call, caps, "rpc-app", msg, "malformed");
                    continue;
                }
            };
            let Some(info) = self.ledger.call(p.ref_id, p.seq) else {
                let msg = format!("call #{} on reference {} was never made", p.seq, p.ref_id);
                self.refuse(call, caps, "e-order", msg, "never made");
                continue;
            };
            let a = Arrival {
                reference: p.ref_id,
                seq: p.seq,
                info,
                object,
            };
            arrived(self.ledger, self.journal, &a);
            self.owe(keep, call, a, caps);
        }
    }

    /// Refuses a call the workload never made (or cannot read), as `oracle` reports.
    fn refuse(
        &mut self,
        call: CallId,
        caps: Vec<CapRef>,
        oracle: &'static str,
        msg: String,
        reason: &str,
    ) {
        self.journal.violation(oracle, msg);
        for c in caps {
            self.vat.release(c);
        }
        let _ = Reply::Exception(reason).send(self.vat, call);
    }

    /// Owes the call that brought `caps` (see `take_calls`).
    fn owe(&mut self, keep: Option<&Ctx>, call: CallId, a: Arrival, mut caps: Vec<CapRef>) {
        let count = self.app.arrivals.entry(a.object).or_default();
        let earlier = *count;
        *count += 1;
        let arg = match (caps.is_empty(), a.info.arg) {
            (false, Some(shadow)) => Some((caps.remove(0), shadow)),
            _ => None,
        };
        if let (Some(ctx), Some((cap, shadow))) = (keep, &arg)
            && ctx.chance(1, 2)
        {
            let shadow = *shadow;
            let copy = self.vat.clone_cap(cap);
            let slot = ctx.choose(SLOTS as u64) as usize;
            let (reference, seq) = (a.reference, a.seq);
            self.store_cap(
                slot,
                copy,
                shadow,
                format_args!("the argument of r{reference}#{seq}"),
            );
        }
        for c in caps {
            self.vat.release(c);
        }
        self.app.owed.push(Owed {
            call,
            name: (a.reference, a.seq),
            earlier,
            arg,
            answer_shadow: a.info.answer,
        });
    }
}
