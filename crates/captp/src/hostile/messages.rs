//! Building the hostile vat's messages from the input: every kind, with IDs mostly taken from
//! what the receiving vat told it (`Seen`), so that `Return`s, `Finish`es, `Resolve`s,
//! `Disembargo`s, `Provide`s and `Accept`s reach live table entries, and otherwise small
//! numbers (collisions) or anything at all.

use super::seen::{Seen, remember};
use super::source::Source;
use super::{ALICE, CAROL, EPOCH, HOSTILE};
use crate::vat::VatId;
use crate::wire::{
    Accept, AnyValue, Bootstrap, Call, CapDescriptor, Disembargo, DisembargoContext, Exception,
    ExceptionType, Finish, Join, ListValue, Message, MessageTarget, Payload, PipelineOp,
    PromisedAnswer, Provide, Release, Resolution, Resolve, Return, ReturnResult, SendResultsTo,
    StructValue,
};

/// An ID from `list` most of the time, else a small one (collisions) or any.
fn pick_id(src: &mut Source<'_>, list: &[u32]) -> u32 {
    match src.byte() % 16 {
        0..=12 if !list.is_empty() => list[src.below(list.len())],
        15 => src.u32(),
        _ => u32::from(src.byte() % 8),
    }
}

/// A question ID for a new question of ours: the next fresh one, or a reused one.
fn new_question(src: &mut Source<'_>, seen: &mut Seen) -> u32 {
    let q = match src.byte() % 8 {
        0..=4 => {
            let q = seen.next_question;
            seen.next_question = seen.next_question.wrapping_add(1);
            q
        }
        5 | 6 => pick_id(src, &seen.our_questions),
        _ => src.u32(),
    };
    remember(&mut seen.our_questions, q);
    q
}

fn new_export(src: &mut Source<'_>, seen: &mut Seen) -> u32 {
    let id = match src.byte() % 4 {
        0 | 1 => {
            let id = seen.next_export;
            seen.next_export = seen.next_export.wrapping_add(1);
            id
        }
        2 => pick_id(src, &seen.our_exports),
        _ => src.u32(),
    };
    remember(&mut seen.our_exports, id);
    id
}

fn data_blob(src: &mut Source<'_>) -> Vec<u8> {
    let n = src.below(12);
    src.bytes(n)
}

/// A value; capability pointers name indices below `caps` (none outside payloads).
fn value(src: &mut Source<'_>, depth: u32, caps: u32) -> AnyValue {
    match src.byte() % 8 {
        0 => AnyValue::Null,
        1 => AnyValue::Data(data_blob(src)),
        2 | 3 if caps > 0 => AnyValue::Capability(src.below(caps as usize) as u32),
        4 | 5 if depth > 0 => AnyValue::Struct(struct_value(src, depth - 1, caps, None)),
        6 if depth > 0 => AnyValue::List(list_value(src, depth - 1, caps)),
        _ => AnyValue::Null,
    }
}

fn struct_value(
    src: &mut Source<'_>,
    depth: u32,
    caps: u32,
    shape: Option<(usize, usize)>,
) -> StructValue {
    let (d, p) = shape.unwrap_or_else(|| (src.below(3), src.below(4)));
    StructValue {
        data: (0..d)
            .map(|_| if src.bool() { 0 } else { src.u64() })
            .collect(),
        pointers: (0..p).map(|_| value(src, depth, caps)).collect(),
    }
}

fn list_value(src: &mut Source<'_>, depth: u32, caps: u32) -> ListValue {
    let n = src.below(5);
    match src.byte() % 7 {
        0 => ListValue::Void(n as u32),
        1 => ListValue::Bits((0..n * 7).map(|_| src.bool()).collect()),
        2 => ListValue::U16((0..n).map(|_| src.u16()).collect()),
        3 => ListValue::U32((0..n).map(|_| src.u32()).collect()),
        4 => ListValue::U64((0..n).map(|_| src.u64()).collect()),
        5 => ListValue::Pointers((0..n).map(|_| value(src, depth, caps)).collect()),
        _ => {
            let shape = (src.below(3), src.below(3));
            ListValue::Structs(
                (0..n)
                    .map(|_| struct_value(src, depth, caps, Some(shape)))
                    .collect(),
            )
        }
    }
}

fn exception(src: &mut Source<'_>) -> Exception {
    let reasons = ["", "boom", "hostile", "\u{fffd}"];
    Exception {
        reason: reasons[src.below(reasons.len())].to_string(),
        kind: match src.byte() % 4 {
            0 => ExceptionType::Failed,
            1 => ExceptionType::Overloaded,
            2 => ExceptionType::Disconnected,
            _ => ExceptionType::Unimplemented,
        },
        trace: if src.one_in(4) {
            "trace".into()
        } else {
            String::new()
        },
    }
}

fn promised(src: &mut Source<'_>, questions: &[u32]) -> PromisedAnswer {
    let n = src.below(4);
    PromisedAnswer {
        question_id: pick_id(src, questions),
        transform: (0..n)
            .map(|_| match src.byte() % 6 {
                0 => PipelineOp::Noop,
                5 => PipelineOp::GetPointerField(src.u16()),
                k => PipelineOp::GetPointerField(u16::from(k - 1)),
            })
            .collect(),
    }
}

// The identifiers of three-party handoff, as `vat/handoff.rs` encodes them (other layouts
// are still worth sending: they must be refused cleanly):
// - a provision: introducer, connection epoch (u32s), nonce (u64), little-endian;
// - a third-party capability ID: the provider (u32), then the provision;
// - a `Provide.recipient`: the recipient (u32) and the provision's nonce (u64).

fn provision_key(introducer: VatId, epoch: u32, nonce: u64) -> Vec<u8> {
    let mut v = introducer.to_le_bytes().to_vec();
    v.extend_from_slice(&epoch.to_le_bytes());
    v.extend_from_slice(&nonce.to_le_bytes());
    v
}

fn recipient(src: &mut Source<'_>, nonce: u64) -> AnyValue {
    let vat = match src.byte() % 8 {
        0..=2 => ALICE,
        3..=5 => CAROL,
        6 => HOSTILE,
        _ => return value(src, 1, 0),
    };
    let mut v = vat.to_le_bytes().to_vec();
    v.extend_from_slice(&nonce.to_le_bytes());
    if src.one_in(16) {
        v.truncate(src.below(v.len()));
    }
    AnyValue::Data(v)
}

/// Everything the hostile vat knows, for the message it is building to `to`.
pub(super) struct Ctx<'a> {
    pub(super) to: VatId,
    pub(super) seen: &'a mut Seen,
    /// Our `Provide`s to the other honest vat (for handoffs we introduce).
    pub(super) other_nonces: &'a [u64],
    /// Third-party IDs the other honest vat sent us (handoffs it introduced).
    pub(super) other_third_party: &'a [Vec<u8>],
    /// The epoch of our connection to the other honest vat.
    pub(super) other_epoch: u32,
}

fn other(v: VatId) -> VatId {
    if v == ALICE { CAROL } else { ALICE }
}

fn descriptor(src: &mut Source<'_>, cx: &mut Ctx<'_>) -> CapDescriptor {
    match src.byte() % 10 {
        0 => CapDescriptor::None,
        1..=3 => CapDescriptor::SenderHosted(new_export(src, cx.seen)),
        4 | 5 => CapDescriptor::SenderPromise(new_export(src, cx.seen)),
        6 => CapDescriptor::ReceiverHosted(pick_id(src, &cx.seen.its_exports)),
        7 => CapDescriptor::ReceiverAnswer(promised(src, &cx.seen.our_questions)),
        _ => {
            // We introduce a capability hosted by the other honest vat (or by one that is
            // not there, or by the receiver itself).
            let provider = match src.byte() % 4 {
                0 | 1 => other(cx.to),
                2 => cx.to,
                _ => src.u32(),
            };
            let nonce = match src.byte() % 8 {
                0..=5 if !cx.other_nonces.is_empty() => {
                    cx.other_nonces[src.below(cx.other_nonces.len())]
                }
                _ => u64::from(src.byte() % 4),
            };
            let epoch = if src.one_in(8) {
                src.u32()
            } else {
                cx.other_epoch
            };
            let mut id = provider.to_le_bytes().to_vec();
            id.extend(provision_key(HOSTILE, epoch, nonce));
            if src.one_in(8) {
                id.truncate(src.below(id.len()));
            }
            CapDescriptor::ThirdPartyHosted {
                id: AnyValue::Data(id),
                vine_id: new_export(src, cx.seen),
            }
        }
    }
}

fn payload(src: &mut Source<'_>, cx: &mut Ctx<'_>) -> Payload {
    let n = src.below(4);
    let cap_table: Vec<CapDescriptor> = (0..n).map(|_| descriptor(src, cx)).collect();
    let caps = cap_table.len() as u32;
    let content = match src.byte() % 4 {
        0 if caps > 0 => AnyValue::Capability(0),
        1 if caps > 0 => AnyValue::Struct(StructValue {
            data: vec![src.u64()],
            pointers: (0..caps).map(AnyValue::Capability).collect(),
        }),
        _ => value(src, 3, caps),
    };
    Payload { content, cap_table }
}

fn target(src: &mut Source<'_>, cx: &mut Ctx<'_>) -> MessageTarget {
    if src.one_in(2) {
        MessageTarget::ImportedCap(pick_id(src, &cx.seen.its_exports))
    } else {
        MessageTarget::PromisedAnswer(promised(src, &cx.seen.our_questions))
    }
}

pub(super) fn message(src: &mut Source<'_>, cx: &mut Ctx<'_>, depth: u32) -> Message {
    match src.byte() % 32 {
        0 if src.one_in(4) => Message::Abort(exception(src)),
        1..=2 => Message::Bootstrap(Bootstrap {
            question_id: new_question(src, cx.seen),
            deprecated_object_id: if src.one_in(8) {
                value(src, 1, 0)
            } else {
                AnyValue::Null
            },
        }),
        3..=8 => {
            let question_id = new_question(src, cx.seen);
            let target = target(src, cx);
            let params = payload(src, cx);
            Message::Call(Call {
                question_id,
                target,
                interface_id: if src.bool() { 0 } else { src.u64() },
                method_id: src.u16(),
                allow_third_party_tail_call: src.bool(),
                no_promise_pipelining: src.bool(),
                only_promise_pipeline: src.bool(),
                params,
                send_results_to: match src.byte() % 8 {
                    0 => SendResultsTo::Yourself,
                    1 => SendResultsTo::ThirdParty(value(src, 1, 0)),
                    _ => SendResultsTo::Caller,
                },
            })
        }
        9..=13 => {
            let answer_id = pick_id(src, &cx.seen.its_questions);
            let flags = src.byte();
            let result = match src.byte() % 10 {
                0..=4 => ReturnResult::Results(payload(src, cx)),
                5 => ReturnResult::Exception(exception(src)),
                6 => ReturnResult::Canceled,
                7 => ReturnResult::ResultsSentElsewhere,
                8 => ReturnResult::TakeFromOtherQuestion(pick_id(src, &cx.seen.our_questions)),
                _ => ReturnResult::AcceptFromThirdParty(value(src, 1, 0)),
            };
            Message::Return(Return {
                answer_id,
                release_param_caps: flags & 1 == 1,
                no_finish_needed: flags & 6 == 6,
                result,
            })
        }
        14..=16 => Message::Finish(Finish {
            question_id: pick_id(src, &cx.seen.our_questions),
            release_result_caps: src.bool(),
            require_early_cancellation_workaround: src.bool(),
        }),
        17..=18 => Message::Resolve(Resolve {
            promise_id: pick_id(src, &cx.seen.our_exports),
            resolution: if src.one_in(4) {
                Resolution::Exception(exception(src))
            } else {
                Resolution::Cap(descriptor(src, cx))
            },
        }),
        19..=20 => Message::Release(Release {
            id: pick_id(src, &cx.seen.its_exports),
            reference_count: match src.byte() % 8 {
                0 => 0,
                7 => src.u32(),
                k => u32::from(k.min(3)),
            },
        }),
        21..=24 => {
            let (target, context) = match src.byte() % 6 {
                0 | 1 if !cx.seen.embargoes.is_empty() => {
                    // Reflect one of its embargoes (perhaps on another target).
                    let (t, id) = cx.seen.embargoes[src.below(cx.seen.embargoes.len())].clone();
                    let t = if src.one_in(4) { target(src, cx) } else { t };
                    (t, DisembargoContext::ReceiverLoopback(id))
                }
                2 => (
                    target(src, cx),
                    DisembargoContext::ReceiverLoopback(u32::from(src.byte() % 4)),
                ),
                3 => (target(src, cx), DisembargoContext::Accept),
                4 => (
                    target(src, cx),
                    DisembargoContext::Provide(pick_id(src, &cx.seen.our_provides)),
                ),
                _ => (
                    target(src, cx),
                    DisembargoContext::SenderLoopback(u32::from(src.byte() % 4)),
                ),
            };
            Message::Disembargo(Disembargo { target, context })
        }
        25..=26 => {
            let question_id = new_question(src, cx.seen);
            remember(&mut cx.seen.our_provides, question_id);
            let nonce = if src.one_in(8) {
                u64::from(src.byte() % 4)
            } else {
                cx.seen.next_nonce += 1;
                cx.seen.next_nonce
            };
            remember(&mut cx.seen.our_nonces, nonce);
            Message::Provide(Provide {
                question_id,
                target: target(src, cx),
                recipient: recipient(src, nonce),
            })
        }
        27..=28 => {
            let question_id = new_question(src, cx.seen);
            let provision = match src.byte() % 4 {
                // A provision the other vat introduced to us with this vat as provider.
                0 | 1 => cx
                    .other_third_party
                    .iter()
                    .filter(|id| id.get(0..4) == Some(&cx.to.to_le_bytes()[..]))
                    .nth(src.below(4))
                    .map(|id| AnyValue::Data(id[4..].to_vec()))
                    .unwrap_or(AnyValue::Null),
                2 => AnyValue::Data(provision_key(
                    other(cx.to),
                    EPOCH,
                    u64::from(src.byte() % 4),
                )),
                _ => value(src, 1, 0),
            };
            Message::Accept(Accept {
                question_id,
                provision,
                embargo: src.bool(),
            })
        }
        29 if depth > 0 => {
            // Echo one of its messages, or something of our own, as not understood.
            let echoed = if !cx.seen.recent.is_empty() && !src.one_in(4) {
                cx.seen.recent[src.below(cx.seen.recent.len())].clone()
            } else {
                message(src, cx, depth - 1)
            };
            Message::Unimplemented(Box::new(echoed))
        }
        30 => Message::Join(Join {
            question_id: new_question(src, cx.seen),
            target: target(src, cx),
            key_part: value(src, 1, 0),
        }),
        31 => {
            if src.bool() {
                Message::ObsoleteSave(value(src, 1, 0))
            } else {
                Message::ObsoleteDelete(value(src, 1, 0))
            }
        }
        _ => Message::Finish(Finish {
            question_id: pick_id(src, &cx.seen.our_questions),
            release_result_caps: true,
            require_early_cancellation_workaround: false,
        }),
    }
}
