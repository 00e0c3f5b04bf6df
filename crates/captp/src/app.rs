//! What every application driving a [`Vat`] does the same way, whatever its objects are: how
//! it settles a call it was given ([`Reply`]) and how it numbers the objects it hosts
//! ([`Objects`]). The test applications (the hostile-peer driver's honest vats here, the
//! probe application of the simulated RPC workloads) choose *which* reply by their own rules;
//! carrying one out is written once, here.

use crate::error::ProtocolError;
use crate::vat::{AnswerRef, CallId, CapRef, Vat};
use crate::wire::AnyValue;

/// One way to settle a call the application was given.
///
/// The capabilities a reply passes are the application's own references: the message takes
/// references of its own, so [`Reply::send`] gives the application's back once it is sent
/// (after it, so that a `Release` never overtakes the message that passes the capability on).
pub enum Reply<'a> {
    /// Results: `content`, whose capability pointers index `caps`.
    Results {
        content: AnyValue,
        caps: Vec<CapRef>,
    },
    /// The results of another answer, when they come (a promise).
    Answer(&'a AnswerRef),
    /// A tail call: the call is settled by what `target` answers to this one.
    TailCall {
        target: &'a CapRef,
        interface_id: u64,
        method_id: u16,
        content: AnyValue,
        caps: Vec<CapRef>,
    },
    /// An exception with this reason.
    Exception(&'a str),
}

impl Reply<'_> {
    /// Settles `call` on `vat` with this reply, then gives back the capabilities it passed.
    pub fn send(self, vat: &mut Vat, call: CallId) -> Result<(), ProtocolError> {
        match self {
            Reply::Results { content, caps } => {
                let refs: Vec<&CapRef> = caps.iter().collect();
                let r = vat.return_results(call, content, &refs);
                give_back(vat, caps);
                r
            }
            Reply::Answer(answer) => vat.return_answer(call, answer),
            Reply::TailCall {
                target,
                interface_id,
                method_id,
                content,
                caps,
            } => {
                let refs: Vec<&CapRef> = caps.iter().collect();
                let r = vat.tail_call(call, target, interface_id, method_id, content, &refs);
                give_back(vat, caps);
                r
            }
            Reply::Exception(reason) => vat.return_exception(call, reason),
        }
    }
}

fn give_back(vat: &mut Vat, caps: Vec<CapRef>) {
    for c in caps {
        vat.release(c);
    }
}

/// The objects an application hosts: numbered from `base`, the first its bootstrap object,
/// each fresh one after the last. The numbering survives a restart of the vat, so that a
/// new object is never taken for one of before.
#[derive(Clone, Copy, Debug)]
pub struct Objects {
    base: u64,
    next: u64,
}

impl Objects {
    /// Objects numbered `base`, `base + 1`, …; `base` itself is the bootstrap object.
    pub fn new(base: u64) -> Self {
        Objects { base, next: 1 }
    }

    /// The bootstrap object.
    pub fn bootstrap(&self) -> u64 {
        self.base
    }

    /// A fresh object, and a capability to it from `vat`.
    pub fn fresh(&mut self, vat: &mut Vat) -> (u64, CapRef) {
        let object = self.base + self.next;
        self.next += 1;
        (object, vat.local_cap(object))
    }

    /// Whether `object` is one of these (the only objects a call to this application may
    /// reach).
    pub fn hosts(&self, object: u64) -> bool {
        object >= self.base && object - self.base < self.next
    }
}
