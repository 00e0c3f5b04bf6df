//! A sans-IO connection: the protocol state machine of one side of one RPC connection, for
//! bootstrap, call/return, finish and release (level 0, plus level-1 reference counting).
//!
//! Messages from the peer go in through [`Connection::handle`]; the messages to send back come
//! out as a `Vec` (and [`Connection::take_outgoing`] drains what local operations queued). What
//! the application must act on (an incoming call, a return) comes out of
//! [`Connection::take_events`]. Nothing here does I/O, reads a clock or draws randomness, so a
//! run is a pure function of the messages and operations fed in.
//!
//! A peer that breaks a rule gets an `Abort` (left in the outgoing queue) and the connection
//! closes: every later `handle` fails with [`ProtocolError::Closed`].
//!
//! Not implemented yet (each is answered so that the peer's counts stay balanced):
//! - `Resolve`, `Disembargo`, `Provide`, `Accept`, `Join` and the obsolete messages are echoed
//!   as `Unimplemented`;
//! - calls with `sendResultsTo` other than `caller`, and calls pipelined on an answer that has
//!   not returned yet, get an exception `Return`;
//! - sending a capability that lives in one of our own answers.
//!
//! Conventions forced by the payload model ([`AnyValue`] content
//! carries no capability pointers): a bootstrap `Return` carries the bootstrap capability as
//! `capTable[0]`, and a promised-answer path selects a cap-table entry: `[]` is entry 0 and
//! `[getPointerField(i)]` is entry `i` (`noop`s are skipped).
//!
//! Our own messages always set `Return.releaseParamCaps` and `Finish.releaseResultCaps` to
//! false (as the C++ implementation does): the application keeps the capabilities it received
//! and releases each import explicitly. A peer that sets them true is honoured.

use crate::error::ProtocolError;
use crate::tables::{Answers, Exports, Imports, Questions};
use crate::wire::{
    AnswerId, AnyValue, Bootstrap, Call, CapDescriptor, Exception, ExceptionType, ExportId, Finish,
    ImportId, Message, MessageTarget, Payload, PipelineOp, PromisedAnswer, QuestionId, Return,
    ReturnResult, SendResultsTo,
};
use std::collections::BTreeMap;

/// The application's identity for one of its local objects.
pub type ObjectId = u64;

/// A capability as the application sees it in a payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cap {
    /// A null capability.
    None,
    /// One of our local objects (travels as `senderHosted`).
    Local(ObjectId),
    /// A capability the peer exported to us (travels back as `receiverHosted`).
    Remote(ImportId),
    /// A capability in the results of one of our questions (travels as `receiverAnswer`).
    Promised(PromisedAnswer),
    /// A capability in the results of one of our answers, named by the peer.
    InOurAnswer(PromisedAnswer),
}

/// What a call is addressed to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallTarget {
    /// A capability the peer exported to us.
    Remote(ImportId),
    /// A capability in the (future) results of one of our questions: promise pipelining.
    Promised(PromisedAnswer),
}

/// How one of our questions ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Results { content: AnyValue, caps: Vec<Cap> },
    Exception(Exception),
    Canceled,
}

/// Something the application must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The peer called one of our objects. Answer with [`Connection::return_results`] or
    /// [`Connection::return_exception`].
    Call {
        answer: AnswerId,
        object: ObjectId,
        interface_id: u64,
        method_id: u16,
        content: AnyValue,
        caps: Vec<Cap>,
    },
    /// One of our questions returned (not reported for questions we had cancelled).
    Returned {
        question: QuestionId,
        outcome: Outcome,
    },
    /// The peer no longer wants this answer; whatever we return is replaced by `canceled`.
    Cancelled { answer: AnswerId },
    /// The peer dropped its last reference to one of our objects.
    ExportReleased { object: ObjectId },
    /// The connection closed; every table was emptied.
    Closed { reason: Exception, by_peer: bool },
}

/// What a live question must remember beyond the table's bookkeeping.
#[derive(Clone, Debug, Default)]
struct QuestionData {
    /// One entry per export reference sent in the params (for `releaseParamCaps`).
    param_exports: Vec<ExportId>,
}

/// What a live answer must remember beyond the table's bookkeeping.
#[derive(Clone, Debug, Default)]
struct AnswerData {
    /// One entry per import reference received in the params.
    param_imports: Vec<ImportId>,
    /// One entry per export reference sent in the results (for `releaseResultCaps`).
    result_exports: Vec<ExportId>,
    /// The cap table we returned, for calls pipelined on this answer.
    results: Option<Vec<CapDescriptor>>,
}

/// One side of one RPC connection.
#[derive(Clone, Debug)]
pub struct Connection {
    questions: Questions,
    answers: Answers,
    exports: Exports<ObjectId>,
    imports: Imports,
    question_data: BTreeMap<QuestionId, QuestionData>,
    answer_data: BTreeMap<AnswerId, AnswerData>,
    bootstrap: Option<ObjectId>,
    outbox: Vec<Message>,
    events: Vec<Event>,
    closed: bool,
}

impl Connection {
    /// A connection that offers `bootstrap` (if any) to a peer's `Bootstrap`.
    pub fn new(bootstrap: Option<ObjectId>) -> Self {
        Connection {
            questions: Questions::new(),
            answers: Answers::new(),
            exports: Exports::new(),
            imports: Imports::new(),
            question_data: BTreeMap::new(),
            answer_data: BTreeMap::new(),
            bootstrap,
            outbox: Vec::new(),
            events: Vec::new(),
            closed: false,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    pub fn questions(&self) -> &Questions {
        &self.questions
    }

    pub fn answers(&self) -> &Answers {
        &self.answers
    }

    pub fn exports(&self) -> &Exports<ObjectId> {
        &self.exports
    }

    pub fn imports(&self) -> &Imports {
        &self.imports
    }

    /// Drains the messages queued for the peer, in order.
    pub fn take_outgoing(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.outbox)
    }

    /// Drains the events for the application, in order.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Processes one message from the peer; returns every message now queued for the peer.
    ///
    /// On a protocol error the connection closes: the error is returned, the messages this
    /// call had produced are dropped and an `Abort` is left in [`Connection::take_outgoing`].
    pub fn handle(&mut self, msg: Message) -> Result<Vec<Message>, ProtocolError> {
        if self.closed {
            return Err(ProtocolError::Closed);
        }
        let mark = self.outbox.len();
        match self.dispatch(msg) {
            Ok(()) => Ok(self.take_outgoing()),
            Err(e) => {
                self.outbox.truncate(mark);
                self.outbox.push(Message::Abort(e.to_exception()));
                self.close(e.to_exception(), false);
                Err(e)
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Local operations.

    /// Asks the peer for its bootstrap capability. Its `Return` carries it as `caps[0]`.
    pub fn bootstrap(&mut self) -> Result<QuestionId, ProtocolError> {
        self.check_open()?;
        let question_id = self.questions.ask()?;
        self.question_data
            .insert(question_id, QuestionData::default());
        self.outbox.push(Message::Bootstrap(Bootstrap {
            question_id,
            deprecated_object_id: AnyValue::Null,
        }));
        Ok(question_id)
    }

    /// Calls a remote capability; returns the question the results will answer.
    pub fn call(
        &mut self,
        target: CallTarget,
        interface_id: u64,
        method_id: u16,
        content: AnyValue,
        caps: &[Cap],
    ) -> Result<QuestionId, ProtocolError> {
        self.check_open()?;
        let target = match target {
            CallTarget::Remote(id) => {
                if !self.imports.contains(id) {
                    return Err(misuse(format!("call on import {id}, which we do not hold")));
                }
                MessageTarget::ImportedCap(id)
            }
            CallTarget::Promised(pa) => {
                self.check_promised(&pa)?;
                MessageTarget::PromisedAnswer(pa)
            }
        };
        self.check_caps(caps)?;
        let question_id = self.questions.ask()?;
        let (cap_table, param_exports) = self.export_caps(caps)?;
        self.question_data
            .insert(question_id, QuestionData { param_exports });
        self.outbox.push(Message::Call(Call {
            question_id,
            target,
            interface_id,
            method_id,
            allow_third_party_tail_call: false,
            no_promise_pipelining: false,
            only_promise_pipeline: false,
            params: Payload { content, cap_table },
            send_results_to: SendResultsTo::Caller,
        }));
        Ok(question_id)
    }

    /// Sends `Finish` for one of our questions: releases its answer, or cancels the call if it
    /// has not returned yet.
    pub fn finish(&mut self, question: QuestionId) -> Result<(), ProtocolError> {
        self.check_open()?;
        self.questions.finish(question)?;
        self.outbox.push(Message::Finish(Finish {
            question_id: question,
            release_result_caps: false,
            require_early_cancellation_workaround: false,
        }));
        Ok(())
    }

    /// Drops every reference we hold to an import and sends the `Release` we owe.
    pub fn release(&mut self, import: ImportId) -> Result<(), ProtocolError> {
        self.check_open()?;
        let release = self.imports.drop_import(import)?;
        self.outbox.push(Message::Release(release));
        Ok(())
    }

    /// Answers an incoming call with results. If the peer already finished the answer, a
    /// `canceled` return is sent instead and `caps` are not exported.
    pub fn return_results(
        &mut self,
        answer: AnswerId,
        content: AnyValue,
        caps: &[Cap],
    ) -> Result<(), ProtocolError> {
        self.check_open()?;
        let state = *self
            .answers
            .get(answer)
            .ok_or(ProtocolError::ReturnForUnknownAnswer { id: answer })?;
        if state.returned {
            return Err(ProtocolError::ReturnAlreadySent { id: answer });
        }
        if state.finish_received {
            return self.send_return(answer, false, ReturnResult::Canceled);
        }
        self.check_caps(caps)?;
        let (cap_table, result_exports) = self.export_caps(caps)?;
        if let Some(data) = self.answer_data.get_mut(&answer) {
            data.result_exports = result_exports;
            data.results = Some(cap_table.clone());
        }
        self.send_return(
            answer,
            false,
            ReturnResult::Results(Payload { content, cap_table }),
        )
    }

    /// Answers an incoming call with an exception.
    pub fn return_exception(
        &mut self,
        answer: AnswerId,
        exception: Exception,
    ) -> Result<(), ProtocolError> {
        self.check_open()?;
        self.send_return(answer, false, ReturnResult::Exception(exception))
    }

    // -----------------------------------------------------------------------------------------
    // Incoming messages.

    fn dispatch(&mut self, msg: Message) -> Result<(), ProtocolError> {
        match msg {
            Message::Bootstrap(b) => self.on_bootstrap(b.question_id),
            Message::Call(c) => self.on_call(c),
            Message::Return(r) => self.on_return(r),
            Message::Finish(f) => self.on_finish(f),
            Message::Release(r) => self.release_export(r.id, r.reference_count),
            Message::Abort(reason) => {
                self.close(reason, true);
                Ok(())
            }
            Message::Unimplemented(inner) => self.on_unimplemented(*inner),
            other @ (Message::Resolve(_)
            | Message::Disembargo(_)
            | Message::Provide(_)
            | Message::Accept(_)
            | Message::Join(_)
            | Message::ObsoleteSave(_)
            | Message::ObsoleteDelete(_)) => {
                self.outbox.push(Message::Unimplemented(Box::new(other)));
                Ok(())
            }
        }
    }

    fn on_bootstrap(&mut self, answer: AnswerId) -> Result<(), ProtocolError> {
        self.answers.on_question(answer)?;
        self.answer_data.insert(answer, AnswerData::default());
        match self.bootstrap {
            Some(object) => self.return_results(answer, AnyValue::Null, &[Cap::Local(object)]),
            None => self.engine_exception(answer, "this vat offers no bootstrap capability"),
        }
    }

    fn on_call(&mut self, call: Call) -> Result<(), ProtocolError> {
        let answer = call.question_id;
        self.answers.on_question(answer)?;
        let (caps, param_imports) = self.import_caps(&call.params.cap_table)?;
        self.answer_data.insert(
            answer,
            AnswerData {
                param_imports,
                ..AnswerData::default()
            },
        );
        if call.send_results_to != SendResultsTo::Caller {
            return self.engine_exception(answer, "sendResultsTo other than caller");
        }
        let object = match &call.target {
            MessageTarget::ImportedCap(id) => {
                self.exports
                    .object(*id)
                    .copied()
                    .ok_or(ProtocolError::NoSuchExport {
                        id: *id,
                        used_in: "Call.target",
                    })?
            }
            MessageTarget::PromisedAnswer(pa) => match self.pipelined_target(pa)? {
                Ok(object) => object,
                Err(why) => return self.engine_exception(answer, why),
            },
        };
        self.events.push(Event::Call {
            answer,
            object,
            interface_id: call.interface_id,
            method_id: call.method_id,
            content: call.params.content,
            caps,
        });
        Ok(())
    }

    /// The local object a call pipelined on one of our answers is for. The outer error is the
    /// peer's fault; the inner one is a case we answer with an exception.
    fn pipelined_target(
        &self,
        pa: &PromisedAnswer,
    ) -> Result<Result<ObjectId, &'static str>, ProtocolError> {
        let no_such = ProtocolError::NoSuchAnswer {
            id: pa.question_id,
            used_in: "Call.target",
        };
        let data = self.answer_data.get(&pa.question_id).ok_or(no_such)?;
        let Some(results) = &data.results else {
            return Ok(Err(
                "pipelining on an answer that has not returned is not implemented yet",
            ));
        };
        let Some(index) = cap_index(&pa.transform) else {
            return Ok(Err("unsupported promised-answer path"));
        };
        Ok(match results.get(index) {
            Some(CapDescriptor::SenderHosted(id) | CapDescriptor::SenderPromise(id)) => self
                .exports
                .object(*id)
                .copied()
                .ok_or("the capability in that answer was released"),
            Some(_) => Err("forwarding pipelined calls is not implemented yet"),
            None => Err("promised-answer path names no capability"),
        })
    }

    fn on_return(&mut self, ret: Return) -> Result<(), ProtocolError> {
        let question = ret.answer_id;
        let kind = match &ret.result {
            ReturnResult::ResultsSentElsewhere => Some("resultsSentElsewhere"),
            ReturnResult::TakeFromOtherQuestion(_) => Some("takeFromOtherQuestion"),
            ReturnResult::AcceptFromThirdParty(_) => Some("acceptFromThirdParty"),
            _ => None,
        };
        if let Some(kind) = kind {
            return Err(ProtocolError::UnexpectedReturn { id: question, kind });
        }
        if ret.no_finish_needed
            && matches!(&ret.result, ReturnResult::Results(p) if !p.cap_table.is_empty())
        {
            return Err(ProtocolError::UnexpectedReturn {
                id: question,
                kind: "noFinishNeeded with capabilities in the results",
            });
        }
        let cancelled = self.questions.get(question).is_some_and(|q| q.finish_sent);
        self.questions.on_return(question, ret.no_finish_needed)?;
        let data = self.question_data.remove(&question).unwrap_or_default();
        if ret.release_param_caps {
            for id in data.param_exports {
                self.release_export(id, 1)?;
            }
        }
        let outcome = match ret.result {
            ReturnResult::Results(payload) => {
                let (caps, counted) = self.import_caps(&payload.cap_table)?;
                if cancelled {
                    // Nobody will see these: give the references straight back.
                    for id in counted {
                        let release = self.imports.release(id, 1)?;
                        self.outbox.push(Message::Release(release));
                    }
                }
                Outcome::Results {
                    content: payload.content,
                    caps,
                }
            }
            ReturnResult::Exception(e) => Outcome::Exception(e),
            _ => Outcome::Canceled,
        };
        if !cancelled {
            self.events.push(Event::Returned { question, outcome });
        }
        Ok(())
    }

    fn on_finish(&mut self, finish: Finish) -> Result<(), ProtocolError> {
        let answer = finish.question_id;
        let returned = self.answers.get(answer).map(|a| a.returned);
        let retired = self.answers.on_finish(answer)?;
        if returned == Some(false) {
            self.events.push(Event::Cancelled { answer });
        }
        if finish.release_result_caps && returned == Some(true) {
            let exports = self
                .answer_data
                .get_mut(&answer)
                .map(|d| std::mem::take(&mut d.result_exports))
                .unwrap_or_default();
            for id in exports {
                self.release_export(id, 1)?;
            }
        }
        if retired {
            self.answer_data.remove(&answer);
        }
        Ok(())
    }

    fn on_unimplemented(&mut self, echoed: Message) -> Result<(), ProtocolError> {
        // The peer did not understand a question of ours: fail it. It never created an answer,
        // so no Finish is owed and the param caps were never received.
        let question = match echoed {
            Message::Call(c) => c.question_id,
            Message::Bootstrap(b) => b.question_id,
            _ => return Ok(()), // nothing else we send needs a reply
        };
        let Some(q) = self.questions.get(question) else {
            return Ok(());
        };
        if q.returned {
            return Ok(());
        }
        let cancelled = q.finish_sent;
        self.questions.on_return(question, true)?;
        let data = self.question_data.remove(&question).unwrap_or_default();
        for id in data.param_exports {
            self.release_export(id, 1)?;
        }
        if !cancelled {
            self.events.push(Event::Returned {
                question,
                outcome: Outcome::Exception(Exception {
                    reason: "peer does not implement this message".into(),
                    kind: ExceptionType::Unimplemented,
                    trace: String::new(),
                }),
            });
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Helpers.

    fn release_export(&mut self, id: ExportId, count: u32) -> Result<(), ProtocolError> {
        if let Some(object) = self.exports.release(id, count)? {
            self.events.push(Event::ExportReleased { object });
        }
        Ok(())
    }

    /// Sends a `Return` for a live answer and updates the answer table.
    fn send_return(
        &mut self,
        answer: AnswerId,
        release_param_caps: bool,
        result: ReturnResult,
    ) -> Result<(), ProtocolError> {
        if self.answers.send_return(answer, false)? {
            self.answer_data.remove(&answer);
        }
        self.outbox.push(Message::Return(Return {
            answer_id: answer,
            release_param_caps,
            no_finish_needed: false,
            result,
        }));
        Ok(())
    }

    /// Answers a call the engine itself cannot serve. The param caps are released implicitly
    /// (`releaseParamCaps`), since no application code ever saw them.
    fn engine_exception(&mut self, answer: AnswerId, reason: &str) -> Result<(), ProtocolError> {
        let params = self
            .answer_data
            .get_mut(&answer)
            .map(|d| std::mem::take(&mut d.param_imports))
            .unwrap_or_default();
        for id in params {
            self.imports.release(id, 1)?;
        }
        self.send_return(
            answer,
            true,
            ReturnResult::Exception(Exception {
                reason: reason.into(),
                kind: ExceptionType::Unimplemented,
                trace: String::new(),
            }),
        )
    }

    fn check_open(&self) -> Result<(), ProtocolError> {
        if self.closed {
            return Err(misuse("the connection is closed".into()));
        }
        Ok(())
    }

    fn check_promised(&self, pa: &PromisedAnswer) -> Result<(), ProtocolError> {
        match self.questions.get(pa.question_id) {
            Some(q) if !q.finish_sent => Ok(()),
            _ => Err(misuse(format!(
                "question {} is not live, so nothing can be pipelined on it",
                pa.question_id
            ))),
        }
    }

    /// Validates caps before anything is exported, so a bad one leaves no counts behind.
    fn check_caps(&self, caps: &[Cap]) -> Result<(), ProtocolError> {
        for cap in caps {
            match cap {
                Cap::None | Cap::Local(_) => {}
                Cap::Remote(id) => {
                    if !self.imports.contains(*id) {
                        return Err(misuse(format!("sending import {id}, which we do not hold")));
                    }
                }
                Cap::Promised(pa) => self.check_promised(pa)?,
                Cap::InOurAnswer(_) => {
                    return Err(misuse(
                        "sending a capability from one of our answers is not implemented".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Turns checked caps into descriptors, counting each export sent.
    fn export_caps(
        &mut self,
        caps: &[Cap],
    ) -> Result<(Vec<CapDescriptor>, Vec<ExportId>), ProtocolError> {
        let mut table = Vec::with_capacity(caps.len());
        let mut exported = Vec::new();
        for cap in caps {
            table.push(match cap {
                Cap::None | Cap::InOurAnswer(_) => CapDescriptor::None,
                Cap::Local(object) => {
                    let id = self.exports.export(*object)?;
                    exported.push(id);
                    CapDescriptor::SenderHosted(id)
                }
                Cap::Remote(id) => CapDescriptor::ReceiverHosted(*id),
                Cap::Promised(pa) => CapDescriptor::ReceiverAnswer(pa.clone()),
            });
        }
        Ok((table, exported))
    }

    /// Turns received descriptors into caps, counting each import received.
    fn import_caps(
        &mut self,
        table: &[CapDescriptor],
    ) -> Result<(Vec<Cap>, Vec<ImportId>), ProtocolError> {
        let mut caps = Vec::with_capacity(table.len());
        let mut counted = Vec::new();
        for desc in table {
            caps.push(match desc {
                CapDescriptor::None => Cap::None,
                // A level-1 peer may use the vine of a third-party cap as a plain import.
                CapDescriptor::SenderHosted(id)
                | CapDescriptor::SenderPromise(id)
                | CapDescriptor::ThirdPartyHosted { vine_id: id, .. } => {
                    self.imports.on_received(*id)?;
                    counted.push(*id);
                    Cap::Remote(*id)
                }
                CapDescriptor::ReceiverHosted(id) => {
                    Cap::Local(self.exports.object(*id).copied().ok_or(
                        ProtocolError::NoSuchExport {
                            id: *id,
                            used_in: "receiverHosted descriptor",
                        },
                    )?)
                }
                CapDescriptor::ReceiverAnswer(pa) => {
                    if self.answers.get(pa.question_id).is_none() {
                        return Err(ProtocolError::NoSuchAnswer {
                            id: pa.question_id,
                            used_in: "receiverAnswer descriptor",
                        });
                    }
                    Cap::InOurAnswer(pa.clone())
                }
            });
        }
        Ok((caps, counted))
    }

    /// Closes the connection: every table is lost, as on a disconnect.
    fn close(&mut self, reason: Exception, by_peer: bool) {
        self.closed = true;
        self.questions.clear();
        self.answers.clear();
        self.exports.clear();
        self.imports.clear();
        self.question_data.clear();
        self.answer_data.clear();
        self.events.push(Event::Closed { reason, by_peer });
    }
}

fn misuse(what: String) -> ProtocolError {
    ProtocolError::Misuse { what }
}

/// The cap-table index a promised-answer path selects (see the module doc).
fn cap_index(transform: &[PipelineOp]) -> Option<usize> {
    let mut fields = transform.iter().filter_map(|op| match op {
        PipelineOp::Noop => None,
        PipelineOp::GetPointerField(i) => Some(usize::from(*i)),
    });
    match (fields.next(), fields.next()) {
        (None, _) => Some(0),
        (Some(i), None) => Some(i),
        (Some(_), Some(_)) => None,
    }
}

#[cfg(test)]
mod tests;
