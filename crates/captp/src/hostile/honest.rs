//! The honest vats' application: it keeps the capabilities and answers it is given (the
//! oldest given back beyond a bound), and acts as the input says: bootstrap, call, pipeline,
//! read an outcome, answer a call (results, exception, a promise, a tail call), release,
//! finish, disconnect. Its payloads are anything at all (not `Probe` calls): what the engine
//! must carry, not what an application means by it.

use super::source::Source;
use super::{HOSTILE, World, vat_id};
use crate::app::{Objects, Reply};
use crate::vat::{AnswerRef, CallId, CapRef, Outcome, Vat, VatId};
use crate::wire::{AnyValue, StructValue};
use std::collections::BTreeSet;

/// Capabilities and answers an application keeps (the oldest is given back beyond this).
const MAX_CAPS: usize = 12;
const MAX_ANSWERS: usize = 8;

/// The interface ID of every call the application makes (the engine does not read it).
const INTERFACE: u64 = 7;

pub(super) struct App {
    caps: Vec<CapRef>,
    answers: Vec<AnswerRef>,
    /// Calls delivered and not answered yet.
    calls: Vec<CallId>,
    objects: Objects,
}

impl App {
    /// The application of the vat whose objects are numbered from `base`.
    pub(super) fn new(base: u64) -> Self {
        App {
            caps: Vec::new(),
            answers: Vec::new(),
            calls: Vec::new(),
            objects: Objects::new(base),
        }
    }

    pub(super) fn objects(&self) -> &Objects {
        &self.objects
    }

    /// A call delivered to one of its objects, with the capabilities it brought.
    pub(super) fn called(&mut self, vat: &mut Vat, call: CallId, caps: Vec<CapRef>) {
        self.calls.push(call);
        for c in caps {
            self.keep_cap(vat, c);
        }
    }

    pub(super) fn keep_cap(&mut self, vat: &mut Vat, cap: CapRef) {
        self.caps.push(cap);
        if self.caps.len() > MAX_CAPS {
            let old = self.caps.remove(0);
            vat.release(old);
        }
    }

    pub(super) fn keep_answer(&mut self, vat: &mut Vat, answer: AnswerRef) {
        self.answers.push(answer);
        if self.answers.len() > MAX_ANSWERS {
            let old = self.answers.remove(0);
            vat.finish(old);
        }
    }

    /// Up to `max` capability arguments: held ones, or new local objects.
    fn args(&mut self, src: &mut Source<'_>, vat: &mut Vat, max: usize) -> Vec<CapRef> {
        let n = src.below(max + 1);
        let mut args = Vec::new();
        for _ in 0..n {
            let cap = if self.caps.is_empty() || src.one_in(4) {
                self.objects.fresh(vat).1
            } else {
                let k = src.below(self.caps.len());
                vat.clone_cap(&self.caps[k])
            };
            args.push(cap);
        }
        args
    }

    /// Answers every call it still owes with an exception and gives back every capability
    /// and answer; returns whether there was anything to give back.
    pub(super) fn give_back(&mut self, vat: &mut Vat, id: VatId) -> bool {
        let mut busy = false;
        for call in std::mem::take(&mut self.calls) {
            busy = true;
            let r = Reply::Exception("the run is over").send(vat, call);
            assert_eq!(r, Ok(()), "vat {id}: answering call {call} failed");
        }
        for cap in std::mem::take(&mut self.caps) {
            busy = true;
            vat.release(cap);
        }
        for answer in std::mem::take(&mut self.answers) {
            busy = true;
            vat.finish(answer);
        }
        busy
    }
}

/// Content naming `n` capabilities (as pointer fields 0.., and at the root for one).
fn content(src: &mut Source<'_>, n: usize) -> AnyValue {
    if n == 1 && src.bool() {
        return AnyValue::Capability(0);
    }
    AnyValue::Struct(StructValue {
        data: vec![src.byte().into()],
        pointers: (0..n as u32).map(AnyValue::Capability).collect(),
    })
}

/// A peer of honest vat `i`: the other honest vat one time in three, else the hostile one.
fn peer_choice(src: &mut Source<'_>, i: usize) -> VatId {
    match src.byte() % 3 {
        0 => vat_id(1 - i),
        _ => HOSTILE,
    }
}

impl World<'_> {
    /// One action of honest vat `i`'s application, then what it sent is checked and passed on.
    pub(super) fn app_step(&mut self, i: usize) {
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
        let (app, vat, src) = (&mut self.apps[i], &mut self.vats[i], &mut self.src);
        match action {
            0 | 1 => {
                let peer = peer_choice(src, i);
                let answer = vat.bootstrap(peer);
                if src.bool() {
                    let cap = vat.pipeline(&answer, &[]);
                    app.keep_cap(vat, cap);
                }
                app.keep_answer(vat, answer);
            }
            2..=4 if ncaps > 0 => {
                let k = src.below(ncaps);
                let args = app.args(src, vat, 2);
                let content = content(src, args.len());
                let method = u16::from(src.byte() % 4);
                let refs: Vec<&CapRef> = args.iter().collect();
                let answer = vat.call(&app.caps[k], INTERFACE, method, content, &refs);
                for c in args {
                    vat.release(c);
                }
                app.keep_answer(vat, answer);
            }
            5 if nanswers > 0 => {
                let k = src.below(nanswers);
                let path: Vec<u16> = match src.byte() % 4 {
                    0 => vec![],
                    1 => vec![0],
                    2 => vec![1],
                    _ => vec![0, 0],
                };
                let cap = vat.pipeline(&app.answers[k], &path);
                app.keep_cap(vat, cap);
            }
            6 if nanswers > 0 => {
                let k = src.below(nanswers);
                if let Some(Outcome::Results { caps, .. }) = vat.outcome(&app.answers[k]) {
                    for c in caps {
                        app.keep_cap(vat, c);
                    }
                }
            }
            7..=10 if !app.calls.is_empty() => {
                let k = src.below(app.calls.len());
                let call = app.calls.remove(k);
                let how = src.byte() % 6;
                if self.trace {
                    eprintln!("    answering call {call} (how {how})");
                }
                let reply = match how {
                    0 => Reply::Exception("refused"),
                    1 if nanswers > 0 => Reply::Answer(&app.answers[src.below(nanswers)]),
                    2 if ncaps > 0 => {
                        let j = src.below(ncaps);
                        let caps = app.args(src, vat, 1);
                        let content = content(src, caps.len());
                        Reply::TailCall {
                            target: &app.caps[j],
                            interface_id: INTERFACE,
                            method_id: 0,
                            content,
                            caps,
                        }
                    }
                    _ => {
                        let caps = app.args(src, vat, 3);
                        let content = content(src, caps.len());
                        Reply::Results { content, caps }
                    }
                };
                let result = reply.send(vat, call);
                assert_eq!(
                    result,
                    Ok(()),
                    "vat {}: answering pending call {call} failed",
                    vat_id(i)
                );
            }
            11 | 12 if ncaps > 0 => {
                let k = src.below(ncaps);
                let cap = app.caps.remove(k);
                vat.release(cap);
            }
            13 if nanswers > 0 => {
                let k = src.below(nanswers);
                let answer = app.answers.remove(k);
                vat.finish(answer);
            }
            14 => {
                let (_, cap) = app.objects.fresh(vat);
                app.keep_cap(vat, cap);
            }
            15 if src.one_in(8) => {
                let peer = peer_choice(src, i);
                vat.disconnect(peer, "the application hung up");
            }
            _ => {}
        }
        self.collect(i, &before);
    }
}
