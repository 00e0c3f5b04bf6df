//! The Probe payload helpers against the code `capnpc` generated from `schema/probe.capnp`:
//! payloads the generated builders write decode to our values, and our values read back
//! through the generated readers, capability indices included.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::generated::probe_capnp::probe;
use crate::generated::rpc_capnp as rpc;
use crate::wire::{
    CapDescriptor, Message, MessageTarget, Payload, Return, ReturnResult, decode, encode,
    placeholder, placeholder_index, placeholder_table,
};
use capnp::traits::{Imbue, ImbueMut};

/// A capability for the generated setters; it lands at the next free index of the builder's
/// cap table.
fn some_cap() -> probe::Client {
    probe::Client {
        client: capnp::capability::Client::new(placeholder(u32::MAX)),
    }
}

/// A `Call` to `Probe.method` whose params the closure writes with the generated builders.
/// The content's cap table starts with `reserved` placeholders, so the first capability the
/// closure sets gets index `reserved`.
fn generated_call(
    method: u16,
    reserved: usize,
    caps: u32,
    write: impl FnOnce(capnp::any_pointer::Builder<'_>),
) -> Vec<u8> {
    let mut table = placeholder_table(reserved);
    let mut builder = capnp::message::Builder::new_default();
    {
        let mut call = builder.init_root::<rpc::message::Builder<'_>>().init_call();
        call.set_question_id(4);
        call.set_interface_id(PROBE_INTERFACE_ID);
        call.set_method_id(method);
        call.reborrow().init_target().set_imported_cap(0);
        let mut params = call.init_params();
        {
            let mut content = params.reborrow().init_content();
            content.imbue_mut(&mut table);
            write(content);
        }
        let mut cap_table = params.init_cap_table(caps);
        for i in 0..caps {
            cap_table.reborrow().get(i).set_sender_hosted(10 + i);
        }
    }
    capnp::serialize::write_message_to_words(&builder)
}

fn content(bytes: &[u8]) -> AnyValue {
    match decode(bytes).unwrap() {
        Message::Call(c) => c.params.content,
        Message::Return(Return {
            result: ReturnResult::Results(p),
            ..
        }) => p.content,
        other => panic!("unexpected {other:?}"),
    }
}

/// Encodes `content` as the params of a call with `caps` cap-table entries.
fn our_call(method: u16, content: AnyValue, caps: u32) -> Vec<u8> {
    encode(&Message::Call(crate::wire::Call {
        question_id: 4,
        target: MessageTarget::ImportedCap(0),
        interface_id: PROBE_INTERFACE_ID,
        method_id: method,
        allow_third_party_tail_call: false,
        no_promise_pipelining: false,
        only_promise_pipeline: false,
        params: Payload {
            content,
            cap_table: (0..caps)
                .map(|i| CapDescriptor::SenderHosted(10 + i))
                .collect(),
        },
        send_results_to: crate::wire::SendResultsTo::Caller,
    }))
}

/// Reads the params of an encoded call with the generated readers.
fn with_generated_params<R>(
    bytes: &[u8],
    caps: usize,
    read: impl FnOnce(capnp::any_pointer::Reader<'_>) -> R,
) -> R {
    let reader =
        capnp::serialize::read_message_from_flat_slice(&mut &bytes[..], Default::default())
            .unwrap();
    let root = reader.get_root::<rpc::message::Reader<'_>>().unwrap();
    let rpc::message::Which::Call(call) = root.which().unwrap() else {
        panic!("not a call")
    };
    let call = call.unwrap();
    assert_eq!(call.get_interface_id(), PROBE_INTERFACE_ID);
    let table = placeholder_table(caps);
    let mut content = call.get_params().unwrap().get_content();
    content.imbue(&table);
    read(content)
}

fn index_of(cap: probe::Client) -> Option<u32> {
    placeholder_index(&*cap.client.hook)
}

#[test]
fn ids_match_the_generated_code() {
    assert_eq!(PROBE_INTERFACE_ID, probe::_private::TYPE_ID);
    assert_eq!(PROBE_INTERFACE_ID, 0xa12a_ca85_185c_061a);
    assert_eq!((CALL_METHOD, GET_CALL_SEQUENCE_METHOD), (0, 1));
}

#[test]
fn generated_call_params_decode() {
    let bytes = generated_call(CALL_METHOD, 1, 2, |c| {
        let mut p = c.init_as::<probe::call_params::Builder<'_>>();
        p.set_ref(0x0102_0304_0506_0708);
        p.set_seq(42);
        p.set_arg(some_cap());
    });
    let v = content(&bytes);
    let expected = ProbeCall {
        ref_id: 0x0102_0304_0506_0708,
        seq: 42,
        arg: Some(1),
    };
    assert_eq!(ProbeCall::from_value(&v), Ok(expected));
    assert_eq!(v, expected.to_value());

    // Without `arg`.
    let bytes = generated_call(CALL_METHOD, 0, 0, |c| {
        let mut p = c.init_as::<probe::call_params::Builder<'_>>();
        p.set_ref(1);
        p.set_seq(2);
    });
    let v = content(&bytes);
    let expected = ProbeCall {
        ref_id: 1,
        seq: 2,
        arg: None,
    };
    assert_eq!(ProbeCall::from_value(&v), Ok(expected));
    assert_eq!(v, expected.to_value());
}

#[test]
fn generated_call_results_decode() {
    let bytes = generated_call(CALL_METHOD, 0, 1, |c| {
        let mut r = c.init_as::<probe::call_results::Builder<'_>>();
        r.set_n(7);
        r.set_cap(some_cap());
    });
    let v = content(&bytes);
    let expected = ProbeReturn { n: 7, cap: Some(0) };
    assert_eq!(ProbeReturn::from_value(&v), Ok(expected));
    assert_eq!(v, expected.to_value());
}

#[test]
fn generated_call_sequence_payloads_decode() {
    let bytes = generated_call(GET_CALL_SEQUENCE_METHOD, 0, 0, |c| {
        c.init_as::<probe::get_call_sequence_params::Builder<'_>>()
            .set_expected(0xdead_beef);
    });
    let v = content(&bytes);
    let expected = GetCallSequence {
        expected: 0xdead_beef,
    };
    assert_eq!(GetCallSequence::from_value(&v), Ok(expected));
    assert_eq!(v, expected.to_value());

    let bytes = generated_call(GET_CALL_SEQUENCE_METHOD, 0, 0, |c| {
        c.init_as::<probe::get_call_sequence_results::Builder<'_>>()
            .set_n(3);
    });
    let v = content(&bytes);
    assert_eq!(CallSequence::from_value(&v), Ok(CallSequence { n: 3 }));
    assert_eq!(v, CallSequence { n: 3 }.to_value());
}

#[test]
fn our_call_params_read_through_the_generated_reader() {
    let call = ProbeCall {
        ref_id: u64::MAX - 5,
        seq: 9,
        arg: Some(2),
    };
    let bytes = our_call(CALL_METHOD, call.to_value(), 3);
    with_generated_params(&bytes, 3, |c| {
        let p = c.get_as::<probe::call_params::Reader<'_>>().unwrap();
        assert_eq!(p.get_ref(), u64::MAX - 5);
        assert_eq!(p.get_seq(), 9);
        assert!(p.has_arg());
        assert_eq!(index_of(p.get_arg().unwrap()), Some(2));
    });

    let bytes = our_call(CALL_METHOD, ProbeCall::default().to_value(), 0);
    with_generated_params(&bytes, 0, |c| {
        let p = c.get_as::<probe::call_params::Reader<'_>>().unwrap();
        assert_eq!((p.get_ref(), p.get_seq(), p.has_arg()), (0, 0, false));
    });
}

#[test]
fn our_results_read_through_the_generated_reader() {
    let bytes = our_call(
        CALL_METHOD,
        ProbeReturn {
            n: 12,
            cap: Some(0),
        }
        .to_value(),
        1,
    );
    with_generated_params(&bytes, 1, |c| {
        let r = c.get_as::<probe::call_results::Reader<'_>>().unwrap();
        assert_eq!(r.get_n(), 12);
        assert_eq!(index_of(r.get_cap().unwrap()), Some(0));
    });
    let bytes = our_call(
        GET_CALL_SEQUENCE_METHOD,
        GetCallSequence { expected: 77 }.to_value(),
        0,
    );
    with_generated_params(&bytes, 0, |c| {
        let p = c
            .get_as::<probe::get_call_sequence_params::Reader<'_>>()
            .unwrap();
        assert_eq!(p.get_expected(), 77);
    });
    let bytes = our_call(
        GET_CALL_SEQUENCE_METHOD,
        CallSequence { n: u32::MAX }.to_value(),
        0,
    );
    with_generated_params(&bytes, 0, |c| {
        let r = c
            .get_as::<probe::get_call_sequence_results::Reader<'_>>()
            .unwrap();
        assert_eq!(r.get_n(), u32::MAX);
    });
}

#[test]
fn reading_is_lenient_like_a_capnp_reader_and_typed_otherwise() {
    // Null reads as defaults; short and long sections read as zero / are ignored.
    assert_eq!(
        ProbeCall::from_value(&AnyValue::Null),
        Ok(ProbeCall::default())
    );
    let short = AnyValue::Struct(StructValue {
        data: vec![5],
        pointers: vec![],
    });
    assert_eq!(
        ProbeCall::from_value(&short),
        Ok(ProbeCall {
            ref_id: 5,
            seq: 0,
            arg: None
        })
    );
    let long = AnyValue::Struct(StructValue {
        data: vec![(9 << 32) | 4, 1, 2],
        pointers: vec![AnyValue::Null, AnyValue::Data(vec![])],
    });
    assert_eq!(
        GetCallSequence::from_value(&long),
        Ok(GetCallSequence { expected: 4 })
    );

    let err = ProbeReturn::from_value(&AnyValue::Data(vec![1])).unwrap_err();
    assert_eq!(
        err,
        PayloadError::NotAStruct {
            payload: "Probe.call results",
            found: "data"
        }
    );
    assert!(err.to_string().contains("expected a struct"), "{err}");
    let bad_cap = AnyValue::Struct(StructValue {
        data: vec![],
        pointers: vec![AnyValue::Text("x".into())],
    });
    let err = ProbeCall::from_value(&bad_cap).unwrap_err();
    assert!(
        matches!(err, PayloadError::NotACapability { found: "text", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("capability"), "{err}");
}
