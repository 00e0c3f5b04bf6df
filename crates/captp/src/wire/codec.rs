//! The codec between [`Message`] values and real Cap'n Proto messages, treating input bytes as
//! hostile (see the module header of `wire`).

use super::error::classify;
use super::value::CapTable;
use super::*;
use crate::generated::rpc_capnp as rpc;

fn unknown(field: &'static str) -> impl FnOnce(capnp::NotInSchema) -> WireError {
    move |capnp::NotInSchema(value)| WireError::UnknownDiscriminant { field, value }
}

/// A required pointer: null is [`WireError::MissingField`], a read error is classified.
fn required<T>(
    present: bool,
    value: capnp::Result<T>,
    field: &'static str,
) -> Result<T, WireError> {
    if !present {
        return Err(WireError::MissingField { field });
    }
    value.map_err(|e| classify(e, field))
}

/// Encodes `msg` as a Cap'n Proto message with a segment table (`capnp::serialize` framing).
///
/// # Panics
///
/// Only if a blob, text or list in `msg` exceeds Cap'n Proto's limit of 2^29 elements, or a
/// struct in an [`AnyValue`] has more than 65535 data words or pointers, which the engine never
/// builds (and [`decode`] never produces: it stops at 8 MiB).
pub fn encode(msg: &Message) -> Vec<u8> {
    let mut builder = capnp::message::Builder::new_default();
    let mut caps = value::CapTable::new();
    put_message(
        msg,
        builder.init_root::<rpc::message::Builder<'_>>(),
        &mut caps,
    );
    let mut bytes = capnp::serialize::write_message_to_words(&builder);
    if !caps.is_empty() {
        value::patch_cap_indices(&mut bytes, &caps);
    }
    bytes
}

/// Decodes exactly one framed message; trailing bytes are an error.
pub fn decode(bytes: &[u8]) -> Result<Message, WireError> {
    // capnp reads words in place and needs them 8-byte aligned; a caller's slice need not be.
    // Copying costs one pass over bytes we are about to read anyway.
    let mut words = capnp::Word::allocate_zeroed_vec(bytes.len().div_ceil(8));
    capnp::Word::words_to_bytes_mut(&mut words)[..bytes.len()].copy_from_slice(bytes);
    let mut rest = &capnp::Word::words_to_bytes(&words)[..bytes.len()];
    let reader = capnp::serialize::read_message_from_flat_slice(&mut rest, READER_OPTIONS)
        .map_err(|e| classify(e, "segment table"))?;
    if !rest.is_empty() {
        return Err(WireError::TrailingBytes { extra: rest.len() });
    }
    let root = reader
        .get_root::<rpc::message::Reader<'_>>()
        .map_err(|e| classify(e, "Message"))?;
    get_message(root)
}

// ---------------------------------------------------------------------------------------------
// Encoding. Builders are written field by field; every setter here is infallible.

fn put_message(msg: &Message, b: rpc::message::Builder<'_>, caps: &mut CapTable) {
    match msg {
        Message::Unimplemented(inner) => put_message(inner, b.init_unimplemented(), caps),
        Message::Abort(e) => put_exception(e, b.init_abort()),
        Message::Bootstrap(m) => {
            let mut x = b.init_bootstrap();
            x.set_question_id(m.question_id);
            put_any(&m.deprecated_object_id, x.init_deprecated_object_id(), caps);
        }
        Message::Call(m) => put_call(m, b.init_call(), caps),
        Message::Return(m) => put_return(m, b.init_return(), caps),
        Message::Finish(m) => {
            let mut x = b.init_finish();
            x.set_question_id(m.question_id);
            x.set_release_result_caps(m.release_result_caps);
            x.set_require_early_cancellation_workaround(m.require_early_cancellation_workaround);
        }
        Message::Resolve(m) => {
            let mut x = b.init_resolve();
            x.set_promise_id(m.promise_id);
            match &m.resolution {
                Resolution::Cap(c) => put_cap(c, x.init_cap(), caps),
                Resolution::Exception(e) => put_exception(e, x.init_exception()),
            }
        }
        Message::Release(m) => {
            let mut x = b.init_release();
            x.set_id(m.id);
            x.set_reference_count(m.reference_count);
        }
        Message::Disembargo(m) => {
            let mut x = b.init_disembargo();
            put_target(&m.target, x.reborrow().init_target());
            let mut c = x.init_context();
            match m.context {
                DisembargoContext::SenderLoopback(id) => c.set_sender_loopback(id),
                DisembargoContext::ReceiverLoopback(id) => c.set_receiver_loopback(id),
                DisembargoContext::Accept => c.set_accept(()),
                DisembargoContext::Provide(q) => c.set_provide(q),
            }
        }
        Message::ObsoleteSave(v) => put_any(v, b.init_obsolete_save(), caps),
        Message::ObsoleteDelete(v) => put_any(v, b.init_obsolete_delete(), caps),
        Message::Provide(m) => {
            let mut x = b.init_provide();
            x.set_question_id(m.question_id);
            put_target(&m.target, x.reborrow().init_target());
            put_any(&m.recipient, x.init_recipient(), caps);
        }
        Message::Accept(m) => {
            let mut x = b.init_accept();
            x.set_question_id(m.question_id);
            x.set_embargo(m.embargo);
            put_any(&m.provision, x.init_provision(), caps);
        }
        Message::Join(m) => {
            let mut x = b.init_join();
            x.set_question_id(m.question_id);
            put_target(&m.target, x.reborrow().init_target());
            put_any(&m.key_part, x.init_key_part(), caps);
        }
    }
}

fn put_call(m: &Call, mut x: rpc::call::Builder<'_>, caps: &mut CapTable) {
    x.set_question_id(m.question_id);
    x.set_interface_id(m.interface_id);
    x.set_method_id(m.method_id);
    x.set_allow_third_party_tail_call(m.allow_third_party_tail_call);
    x.set_no_promise_pipelining(m.no_promise_pipelining);
    x.set_only_promise_pipeline(m.only_promise_pipeline);
    put_target(&m.target, x.reborrow().init_target());
    put_payload(&m.params, x.reborrow().init_params(), caps);
    let mut s = x.init_send_results_to();
    match &m.send_results_to {
        SendResultsTo::Caller => s.set_caller(()),
        SendResultsTo::Yourself => s.set_yourself(()),
        SendResultsTo::ThirdParty(v) => put_any(v, s.init_third_party(), caps),
    }
}

fn put_return(m: &Return, mut x: rpc::return_::Builder<'_>, caps: &mut CapTable) {
    x.set_answer_id(m.answer_id);
    x.set_release_param_caps(m.release_param_caps);
    x.set_no_finish_needed(m.no_finish_needed);
    match &m.result {
        ReturnResult::Results(p) => put_payload(p, x.init_results(), caps),
        ReturnResult::Exception(e) => put_exception(e, x.init_exception()),
        ReturnResult::Canceled => x.set_canceled(()),
        ReturnResult::ResultsSentElsewhere => x.set_results_sent_elsewhere(()),
        ReturnResult::TakeFromOtherQuestion(q) => x.set_take_from_other_question(*q),
        ReturnResult::AcceptFromThirdParty(v) => put_any(v, x.init_accept_from_third_party(), caps),
    }
}

fn put_target(t: &MessageTarget, mut x: rpc::message_target::Builder<'_>) {
    match t {
        MessageTarget::ImportedCap(id) => x.set_imported_cap(*id),
        MessageTarget::PromisedAnswer(p) => put_promised(p, x.init_promised_answer()),
    }
}

fn put_promised(p: &PromisedAnswer, mut x: rpc::promised_answer::Builder<'_>) {
    x.set_question_id(p.question_id);
    if p.transform.is_empty() {
        return; // peers omit an empty transform; null reads back as empty
    }
    let mut ops = x.init_transform(len32(p.transform.len()));
    for (i, op) in p.transform.iter().enumerate() {
        let mut o = ops.reborrow().get(len32(i));
        match op {
            PipelineOp::Noop => o.set_noop(()),
            PipelineOp::GetPointerField(n) => o.set_get_pointer_field(*n),
        }
    }
}

fn put_payload(p: &Payload, mut x: rpc::payload::Builder<'_>, caps: &mut CapTable) {
    put_any(&p.content, x.reborrow().init_content(), caps);
    if p.cap_table.is_empty() {
        return;
    }
    let mut table = x.init_cap_table(len32(p.cap_table.len()));
    for (i, c) in p.cap_table.iter().enumerate() {
        put_cap(c, table.reborrow().get(len32(i)), caps);
    }
}

fn put_cap(c: &CapDescriptor, mut x: rpc::cap_descriptor::Builder<'_>, caps: &mut CapTable) {
    match c {
        CapDescriptor::None => x.set_none(()),
        CapDescriptor::SenderHosted(id) => x.set_sender_hosted(*id),
        CapDescriptor::SenderPromise(id) => x.set_sender_promise(*id),
        CapDescriptor::ReceiverHosted(id) => x.set_receiver_hosted(*id),
        CapDescriptor::ReceiverAnswer(p) => put_promised(p, x.init_receiver_answer()),
        CapDescriptor::ThirdPartyHosted { id, vine_id } => {
            let mut t = x.init_third_party_hosted();
            t.set_vine_id(*vine_id);
            put_any(id, t.init_id(), caps);
        }
    }
}

fn put_exception(e: &Exception, mut x: rpc::exception::Builder<'_>) {
    x.set_reason(e.reason.as_str());
    x.set_type(match e.kind {
        ExceptionType::Failed => rpc::exception::Type::Failed,
        ExceptionType::Overloaded => rpc::exception::Type::Overloaded,
        ExceptionType::Disconnected => rpc::exception::Type::Disconnected,
        ExceptionType::Unimplemented => rpc::exception::Type::Unimplemented,
    });
    if !e.trace.is_empty() {
        x.set_trace(e.trace.as_str());
    }
}

/// Writes an `AnyPointer`; capability pointers go into `caps`, the cap table of the whole
/// message, for [`value::patch_cap_indices`].
fn put_any(v: &AnyValue, mut x: capnp::any_pointer::Builder<'_>, caps: &mut CapTable) {
    match v {
        AnyValue::Null => {}
        AnyValue::Data(bytes) => x
            .initn_as::<capnp::data::Builder<'_>>(len32(bytes.len()))
            .copy_from_slice(bytes),
        AnyValue::Text(s) => x
            .initn_as::<capnp::text::Builder<'_>>(len32(s.len()))
            .push_str(s),
        _ => value::put(v, x.reborrow(), caps),
    }
}

/// A list length for capnp. Larger lengths than u32 cannot be encoded at all; capnp itself
/// rejects anything above 2^29 (see [`encode`]'s panic note).
fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

// ---------------------------------------------------------------------------------------------
// Decoding. Each reader call that can fail names the field it was reading.

fn get_message(r: rpc::message::Reader<'_>) -> Result<Message, WireError> {
    use rpc::message::Which as W;
    Ok(match r.which().map_err(unknown("Message"))? {
        W::Unimplemented(m) => {
            let inner = required(r.has_unimplemented(), m, "Message.unimplemented")?;
            Message::Unimplemented(Box::new(get_message(inner)?))
        }
        W::Abort(e) => Message::Abort(get_exception(
            required(r.has_abort(), e, "Message.abort")?,
            "Message.abort",
        )?),
        W::Bootstrap(b) => {
            let b = required(r.has_bootstrap(), b, "Message.bootstrap")?;
            Message::Bootstrap(Bootstrap {
                question_id: b.get_question_id(),
                deprecated_object_id: get_any(
                    b.get_deprecated_object_id(),
                    "Bootstrap.deprecatedObjectId",
                    None,
                )?,
            })
        }
        W::Call(c) => Message::Call(get_call(required(r.has_call(), c, "Message.call")?)?),
        W::Return(x) => {
            Message::Return(get_return(required(r.has_return(), x, "Message.return")?)?)
        }
        W::Finish(f) => {
            let f = required(r.has_finish(), f, "Message.finish")?;
            Message::Finish(Finish {
                question_id: f.get_question_id(),
                release_result_caps: f.get_release_result_caps(),
                require_early_cancellation_workaround: f
                    .get_require_early_cancellation_workaround(),
            })
        }
        W::Resolve(x) => {
            use rpc::resolve::Which as R;
            let x = required(r.has_resolve(), x, "Message.resolve")?;
            let resolution = match x.which().map_err(unknown("Resolve"))? {
                R::Cap(c) => Resolution::Cap(get_cap(required(x.has_cap(), c, "Resolve.cap")?)?),
                R::Exception(e) => Resolution::Exception(get_exception(
                    required(x.has_exception(), e, "Resolve.exception")?,
                    "Resolve.exception",
                )?),
            };
            Message::Resolve(Resolve {
                promise_id: x.get_promise_id(),
                resolution,
            })
        }
        W::Release(x) => {
            let x = required(r.has_release(), x, "Message.release")?;
            Message::Release(Release {
                id: x.get_id(),
                reference_count: x.get_reference_count(),
            })
        }
        W::Disembargo(x) => {
            use rpc::disembargo::context::Which as C;
            let x = required(r.has_disembargo(), x, "Message.disembargo")?;
            let target = get_target(
                required(x.has_target(), x.get_target(), "Disembargo.target")?,
                "Disembargo.target",
            )?;
            let context = match x
                .get_context()
                .which()
                .map_err(unknown("Disembargo.context"))?
            {
                C::SenderLoopback(id) => DisembargoContext::SenderLoopback(id),
                C::ReceiverLoopback(id) => DisembargoContext::ReceiverLoopback(id),
                C::Accept(()) => DisembargoContext::Accept,
                C::Provide(q) => DisembargoContext::Provide(q),
            };
            Message::Disembargo(Disembargo { target, context })
        }
        W::ObsoleteSave(v) => Message::ObsoleteSave(get_any(v, "Message.obsoleteSave", None)?),
        W::ObsoleteDelete(v) => {
            Message::ObsoleteDelete(get_any(v, "Message.obsoleteDelete", None)?)
        }
        W::Provide(x) => {
            let x = required(r.has_provide(), x, "Message.provide")?;
            Message::Provide(Provide {
                question_id: x.get_question_id(),
                target: get_target(
                    required(x.has_target(), x.get_target(), "Provide.target")?,
                    "Provide.target",
                )?,
                recipient: get_any(x.get_recipient(), "Provide.recipient", None)?,
            })
        }
        W::Accept(x) => {
            let x = required(r.has_accept(), x, "Message.accept")?;
            Message::Accept(Accept {
                question_id: x.get_question_id(),
                provision: get_any(x.get_provision(), "Accept.provision", None)?,
                embargo: x.get_embargo(),
            })
        }
        W::Join(x) => {
            let x = required(r.has_join(), x, "Message.join")?;
            Message::Join(Join {
                question_id: x.get_question_id(),
                target: get_target(
                    required(x.has_target(), x.get_target(), "Join.target")?,
                    "Join.target",
                )?,
                key_part: get_any(x.get_key_part(), "Join.keyPart", None)?,
            })
        }
    })
}

fn get_call(c: rpc::call::Reader<'_>) -> Result<Call, WireError> {
    use rpc::call::send_results_to::Which as S;
    let target = get_target(
        required(c.has_target(), c.get_target(), "Call.target")?,
        "Call.target",
    )?;
    let params = get_payload(
        required(c.has_params(), c.get_params(), "Call.params")?,
        "Call.params",
    )?;
    let srt = c.get_send_results_to();
    let send_results_to = match srt.which().map_err(unknown("Call.sendResultsTo"))? {
        S::Caller(()) => SendResultsTo::Caller,
        S::Yourself(()) => SendResultsTo::Yourself,
        S::ThirdParty(v) => {
            SendResultsTo::ThirdParty(get_any(v, "Call.sendResultsTo.thirdParty", None)?)
        }
    };
    Ok(Call {
        question_id: c.get_question_id(),
        target,
        interface_id: c.get_interface_id(),
        method_id: c.get_method_id(),
        allow_third_party_tail_call: c.get_allow_third_party_tail_call(),
        no_promise_pipelining: c.get_no_promise_pipelining(),
        only_promise_pipeline: c.get_only_promise_pipeline(),
        params,
        send_results_to,
    })
}

fn get_return(x: rpc::return_::Reader<'_>) -> Result<Return, WireError> {
    use rpc::return_::Which as R;
    let result = match x.which().map_err(unknown("Return"))? {
        R::Results(p) => ReturnResult::Results(get_payload(
            required(x.has_results(), p, "Return.results")?,
            "Return.results",
        )?),
        R::Exception(e) => ReturnResult::Exception(get_exception(
            required(x.has_exception(), e, "Return.exception")?,
            "Return.exception",
        )?),
        R::Canceled(()) => ReturnResult::Canceled,
        R::ResultsSentElsewhere(()) => ReturnResult::ResultsSentElsewhere,
        R::TakeFromOtherQuestion(q) => ReturnResult::TakeFromOtherQuestion(q),
        R::AcceptFromThirdParty(v) => {
            ReturnResult::AcceptFromThirdParty(get_any(v, "Return.acceptFromThirdParty", None)?)
        }
    };
    Ok(Return {
        answer_id: x.get_answer_id(),
        release_param_caps: x.get_release_param_caps(),
        no_finish_needed: x.get_no_finish_needed(),
        result,
    })
}

fn get_target(
    t: rpc::message_target::Reader<'_>,
    field: &'static str,
) -> Result<MessageTarget, WireError> {
    use rpc::message_target::Which as T;
    Ok(match t.which().map_err(unknown(field))? {
        T::ImportedCap(id) => MessageTarget::ImportedCap(id),
        T::PromisedAnswer(p) => MessageTarget::PromisedAnswer(get_promised(required(
            t.has_promised_answer(),
            p,
            "MessageTarget.promisedAnswer",
        )?)?),
    })
}

fn get_promised(p: rpc::promised_answer::Reader<'_>) -> Result<PromisedAnswer, WireError> {
    use rpc::promised_answer::op::Which as O;
    const FIELD: &str = "PromisedAnswer.transform";
    let mut transform = Vec::new();
    if p.has_transform() {
        let ops = p.get_transform().map_err(|e| classify(e, FIELD))?;
        for op in ops.iter() {
            transform.push(match op.which().map_err(unknown(FIELD))? {
                O::Noop(()) => PipelineOp::Noop,
                O::GetPointerField(n) => PipelineOp::GetPointerField(n),
            });
        }
    }
    Ok(PromisedAnswer {
        question_id: p.get_question_id(),
        transform,
    })
}

fn get_payload(p: rpc::payload::Reader<'_>, field: &'static str) -> Result<Payload, WireError> {
    let mut cap_table = Vec::new();
    if p.has_cap_table() {
        let caps = p
            .get_cap_table()
            .map_err(|e| classify(e, "Payload.capTable"))?;
        for c in caps.iter() {
            cap_table.push(get_cap(c)?);
        }
    }
    let content = get_any(p.get_content(), field, Some(cap_table.len()))?;
    Ok(Payload { content, cap_table })
}

fn get_cap(c: rpc::cap_descriptor::Reader<'_>) -> Result<CapDescriptor, WireError> {
    use rpc::cap_descriptor::Which as C;
    Ok(match c.which().map_err(unknown("CapDescriptor"))? {
        C::None(()) => CapDescriptor::None,
        C::SenderHosted(id) => CapDescriptor::SenderHosted(id),
        C::SenderPromise(id) => CapDescriptor::SenderPromise(id),
        C::ReceiverHosted(id) => CapDescriptor::ReceiverHosted(id),
        C::ReceiverAnswer(p) => CapDescriptor::ReceiverAnswer(get_promised(required(
            c.has_receiver_answer(),
            p,
            "CapDescriptor.receiverAnswer",
        )?)?),
        C::ThirdPartyHosted(t) => {
            let t = required(
                c.has_third_party_hosted(),
                t,
                "CapDescriptor.thirdPartyHosted",
            )?;
            CapDescriptor::ThirdPartyHosted {
                id: get_any(t.get_id(), "ThirdPartyCapDescriptor.id", None)?,
                vine_id: t.get_vine_id(),
            }
        }
    })
}

fn get_exception(
    e: rpc::exception::Reader<'_>,
    field: &'static str,
) -> Result<Exception, WireError> {
    let kind = match e.get_type().map_err(unknown("Exception.type"))? {
        rpc::exception::Type::Failed => ExceptionType::Failed,
        rpc::exception::Type::Overloaded => ExceptionType::Overloaded,
        rpc::exception::Type::Disconnected => ExceptionType::Disconnected,
        rpc::exception::Type::Unimplemented => ExceptionType::Unimplemented,
    };
    Ok(Exception {
        reason: get_text(e.has_reason(), e.get_reason(), field)?,
        kind,
        trace: get_text(e.has_trace(), e.get_trace(), field)?,
    })
}

fn get_text(
    present: bool,
    t: capnp::Result<capnp::text::Reader<'_>>,
    field: &'static str,
) -> Result<String, WireError> {
    if !present {
        return Ok(String::new());
    }
    let t = t.map_err(|e| classify(e, field))?;
    match t.to_str() {
        Ok(s) => Ok(s.to_owned()),
        Err(_) => Err(WireError::InvalidText { field }),
    }
}

/// Reads an `AnyPointer`. `cap_table` is the length of the payload's cap table, or `None` for
/// a field that has none (where a capability pointer is unsupported).
fn get_any(
    v: capnp::any_pointer::Reader<'_>,
    field: &'static str,
    cap_table: Option<usize>,
) -> Result<AnyValue, WireError> {
    if v.is_null() {
        return Ok(AnyValue::Null);
    }
    use capnp::ErrorKind as K;
    match v.get_as::<capnp::data::Reader<'_>>() {
        Ok(bytes) => Ok(AnyValue::Data(bytes.to_vec())),
        // A pointer of another type (struct, list, capability) takes the general path; bounds
        // and limit faults keep their own kinds.
        Err(e)
            if matches!(
                e.kind,
                K::MessageContainsNonListPointerWhereDataWasExpected
                    | K::MessageContainsListPointerOfNonBytesWhereDataWasExpected
                    | K::ExpectedAListOrBlob
            ) =>
        {
            value::get(v, field, cap_table)
        }
        Err(e) => Err(classify(e, field)),
    }
}
