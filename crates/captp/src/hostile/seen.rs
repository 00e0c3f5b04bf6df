//! What the hostile vat knows about one honest vat: the IDs it was told and the ones it made
//! up, so that the messages it builds name live table entries most of the time.

use super::EPOCH;
use crate::wire::{
    AnyValue, CapDescriptor, Disembargo, DisembargoContext, Message, MessageTarget, Resolution,
    Resolve, ReturnResult,
};
use std::collections::VecDeque;

/// IDs remembered per kind for the hostile vat to reuse.
const MAX_SEEN: usize = 16;

#[derive(Default)]
pub(super) struct Seen {
    /// Questions the honest vat asked us (Bootstrap, Call, Provide, Accept): for `Return`.
    pub(super) its_questions: Vec<u32>,
    /// Its exports to us: for call targets, `Release`, `receiverHosted`.
    pub(super) its_exports: Vec<u32>,
    /// Our questions to it: for `Finish`, promised-answer targets, `receiverAnswer`.
    pub(super) our_questions: Vec<u32>,
    /// Our `Provide`s to it (as introducer): for `Disembargo.provide` and provision keys.
    pub(super) our_provides: Vec<u32>,
    /// The nonces of those `Provide`s.
    pub(super) our_nonces: Vec<u64>,
    pub(super) next_nonce: u64,
    /// Our exports to it: for `Resolve`.
    pub(super) our_exports: Vec<u32>,
    /// Its `senderLoopback` disembargoes, to reflect.
    pub(super) embargoes: Vec<(MessageTarget, u32)>,
    /// Third-party capability IDs it sent us.
    pub(super) third_party_ids: Vec<Vec<u8>>,
    /// The last messages it sent us (to echo as `Unimplemented`).
    pub(super) recent: VecDeque<Message>,
    pub(super) next_question: u32,
    pub(super) next_export: u32,
    /// The epoch of our connection to it.
    pub(super) epoch: u32,
}

impl Seen {
    pub(super) fn new() -> Self {
        Seen {
            epoch: EPOCH,
            ..Seen::default()
        }
    }
}

pub(super) fn remember<T: PartialEq>(list: &mut Vec<T>, x: T) {
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
    pub(super) fn observe(&mut self, m: &Message) {
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
    pub(super) fn sent(&mut self, m: &Message) {
        match m {
            Message::Return(r) => self.its_questions.retain(|q| *q != r.answer_id),
            Message::Finish(f) => self.our_questions.retain(|q| *q != f.question_id),
            _ => {}
        }
    }
}
