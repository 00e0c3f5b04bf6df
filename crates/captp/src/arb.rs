//! proptest strategies for the wire model: arbitrary [`Message`]s covering every variant,
//! with IDs drawn both from a small range (so tests see collisions) and from all of `u32`.

use crate::wire::*;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::Union;

pub fn id() -> impl Strategy<Value = u32> {
    prop_oneof![3 => 0u32..8, 1 => any::<u32>()]
}

/// Values for a field without a cap table, in normal form (so they round-trip exactly).
pub fn any_value() -> impl Strategy<Value = AnyValue> {
    value(0, false)
}

/// Values of every kind, nested a few levels deep. Capability pointers name indices below
/// `caps` (none when `caps` is 0). With `loose`, also values that are not in normal form (see
/// [`AnyValue::normalized`]): `Text`, and struct lists whose elements differ in size.
pub fn value(caps: u32, loose: bool) -> BoxedStrategy<AnyValue> {
    let mut leaves = vec![
        Just(AnyValue::Null).boxed(),
        vec(any::<u8>(), 0..24).prop_map(AnyValue::Data).boxed(),
    ];
    if caps > 0 {
        leaves.push((0..caps).prop_map(AnyValue::Capability).boxed());
    }
    if loose {
        leaves.push("\\PC{0,8}".prop_map(AnyValue::Text).boxed());
    }
    Union::new(leaves)
        .prop_recursive(4, 32, 4, move |inner| {
            let word = || prop_oneof![Just(0u64), any::<u64>()];
            let structs = if loose {
                vec(struct_value(inner.clone(), 0..3, 0..3), 0..4).boxed()
            } else {
                // Uniform elements, as the wire has them.
                (0..3usize, 0..3usize)
                    .prop_flat_map({
                        let inner = inner.clone();
                        move |(d, p)| vec(struct_value(inner.clone(), d..=d, p..=p), 0..4)
                    })
                    .boxed()
            };
            prop_oneof![
                3 => struct_value(inner.clone(), 0..4, 0..4).prop_map(AnyValue::Struct),
                1 => (0u32..5).prop_map(|n| AnyValue::List(ListValue::Void(n))),
                1 => vec(any::<bool>(), 0..70).prop_map(|b| AnyValue::List(ListValue::Bits(b))),
                1 => vec(any::<u16>(), 0..6).prop_map(|x| AnyValue::List(ListValue::U16(x))),
                1 => vec(any::<u32>(), 0..6).prop_map(|x| AnyValue::List(ListValue::U32(x))),
                1 => vec(word(), 0..4).prop_map(|x| AnyValue::List(ListValue::U64(x))),
                2 => vec(inner.clone(), 0..4).prop_map(|x| AnyValue::List(ListValue::Pointers(x))),
                2 => structs.prop_map(|x| AnyValue::List(ListValue::Structs(x))),
            ]
        })
        .boxed()
}

fn struct_value(
    inner: BoxedStrategy<AnyValue>,
    data: impl Into<proptest::collection::SizeRange>,
    pointers: impl Into<proptest::collection::SizeRange>,
) -> impl Strategy<Value = StructValue> {
    let word = prop_oneof![Just(0u64), any::<u64>()];
    (vec(word, data), vec(inner, pointers))
        .prop_map(|(data, pointers)| StructValue { data, pointers })
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "\\PC{0,12}"]
}

pub fn exception() -> impl Strategy<Value = Exception> {
    let kind = prop_oneof![
        Just(ExceptionType::Failed),
        Just(ExceptionType::Overloaded),
        Just(ExceptionType::Disconnected),
        Just(ExceptionType::Unimplemented),
    ];
    (text(), kind, text()).prop_map(|(reason, kind, trace)| Exception {
        reason,
        kind,
        trace,
    })
}

pub fn promised_answer() -> impl Strategy<Value = PromisedAnswer> {
    let op = prop_oneof![
        Just(PipelineOp::Noop),
        any::<u16>().prop_map(PipelineOp::GetPointerField),
    ];
    (id(), vec(op, 0..4)).prop_map(|(question_id, transform)| PromisedAnswer {
        question_id,
        transform,
    })
}

pub fn target() -> impl Strategy<Value = MessageTarget> {
    prop_oneof![
        id().prop_map(MessageTarget::ImportedCap),
        promised_answer().prop_map(MessageTarget::PromisedAnswer),
    ]
}

pub fn cap_descriptor() -> impl Strategy<Value = CapDescriptor> {
    prop_oneof![
        Just(CapDescriptor::None),
        id().prop_map(CapDescriptor::SenderHosted),
        id().prop_map(CapDescriptor::SenderPromise),
        id().prop_map(CapDescriptor::ReceiverHosted),
        promised_answer().prop_map(CapDescriptor::ReceiverAnswer),
        (any_value(), id())
            .prop_map(|(id, vine_id)| CapDescriptor::ThirdPartyHosted { id, vine_id }),
    ]
}

/// A payload whose content's capability pointers name entries of its cap table.
pub fn payload() -> impl Strategy<Value = Payload> {
    payload_with(false)
}

/// Like [`payload`]; with `loose`, the content need not be in normal form.
pub fn payload_with(loose: bool) -> impl Strategy<Value = Payload> {
    vec(cap_descriptor(), 0..4).prop_flat_map(move |cap_table| {
        let caps = u32::try_from(cap_table.len()).unwrap_or(0);
        value(caps, loose).prop_map(move |content| Payload {
            content,
            cap_table: cap_table.clone(),
        })
    })
}

fn call() -> impl Strategy<Value = Call> {
    let srt = prop_oneof![
        Just(SendResultsTo::Caller),
        Just(SendResultsTo::Yourself),
        any_value().prop_map(SendResultsTo::ThirdParty),
    ];
    (
        (id(), target(), any::<u64>(), any::<u16>()),
        (any::<bool>(), any::<bool>(), any::<bool>()),
        payload(),
        srt,
    )
        .prop_map(
            |((question_id, target, interface_id, method_id), flags, params, srt)| Call {
                question_id,
                target,
                interface_id,
                method_id,
                allow_third_party_tail_call: flags.0,
                no_promise_pipelining: flags.1,
                only_promise_pipeline: flags.2,
                params,
                send_results_to: srt,
            },
        )
}

fn return_() -> impl Strategy<Value = Return> {
    let result = prop_oneof![
        payload().prop_map(ReturnResult::Results),
        exception().prop_map(ReturnResult::Exception),
        Just(ReturnResult::Canceled),
        Just(ReturnResult::ResultsSentElsewhere),
        id().prop_map(ReturnResult::TakeFromOtherQuestion),
        any_value().prop_map(ReturnResult::AcceptFromThirdParty),
    ];
    (id(), any::<bool>(), any::<bool>(), result).prop_map(|(answer_id, rpc, nfn, result)| Return {
        answer_id,
        release_param_caps: rpc,
        no_finish_needed: nfn,
        result,
    })
}

fn disembargo() -> impl Strategy<Value = Disembargo> {
    let context = prop_oneof![
        id().prop_map(DisembargoContext::SenderLoopback),
        id().prop_map(DisembargoContext::ReceiverLoopback),
        Just(DisembargoContext::Accept),
        id().prop_map(DisembargoContext::Provide),
    ];
    (target(), context).prop_map(|(target, context)| Disembargo { target, context })
}

/// Every message kind except `Unimplemented`.
fn leaf_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        exception().prop_map(Message::Abort),
        (id(), any_value()).prop_map(|(question_id, deprecated_object_id)| {
            Message::Bootstrap(Bootstrap {
                question_id,
                deprecated_object_id,
            })
        }),
        call().prop_map(Message::Call),
        return_().prop_map(Message::Return),
        (id(), any::<bool>(), any::<bool>()).prop_map(|(question_id, r, w)| {
            Message::Finish(Finish {
                question_id,
                release_result_caps: r,
                require_early_cancellation_workaround: w,
            })
        }),
        (
            id(),
            prop_oneof![
                cap_descriptor().prop_map(Resolution::Cap),
                exception().prop_map(Resolution::Exception),
            ]
        )
            .prop_map(|(promise_id, resolution)| Message::Resolve(Resolve {
                promise_id,
                resolution
            })),
        (id(), any::<u32>()).prop_map(|(id, reference_count)| Message::Release(Release {
            id,
            reference_count
        })),
        disembargo().prop_map(Message::Disembargo),
        any_value().prop_map(Message::ObsoleteSave),
        any_value().prop_map(Message::ObsoleteDelete),
        (id(), target(), any_value()).prop_map(|(question_id, target, recipient)| {
            Message::Provide(Provide {
                question_id,
                target,
                recipient,
            })
        }),
        (id(), any_value(), any::<bool>()).prop_map(|(question_id, provision, embargo)| {
            Message::Accept(Accept {
                question_id,
                provision,
                embargo,
            })
        }),
        (id(), target(), any_value()).prop_map(|(question_id, target, key_part)| {
            Message::Join(Join {
                question_id,
                target,
                key_part,
            })
        }),
    ]
}

/// Any message; one in ten is an `Unimplemented` echo (nested one or two deep).
pub fn message() -> impl Strategy<Value = Message> {
    let echo = |m| Message::Unimplemented(Box::new(m));
    prop_oneof![
        18 => leaf_message(),
        1 => leaf_message().prop_map(echo),
        1 => leaf_message().prop_map(move |m| echo(echo(m))),
    ]
}
