//! The bytes are real Cap'n Proto RPC messages, and malformed ones do not panic the vat.

mod common;

use capnp_peer::{CapnpRpcVat, describe_message};
use capnp_rpc::rpc_capnp::message;
use common::{Dir, pump};

/// A short exchange: bootstrap, a call, a call pipelined on it, release and finish.
fn short_exchange() -> Vec<(Dir, Vec<u8>)> {
    let mut client = CapnpRpcVat::new(false);
    let mut server = CapnpRpcVat::new(true);
    let boot = client.bootstrap();
    let a0 = client.call(boot, 1, 0, None).expect("call");
    let p0 = client.pipeline_cap(a0).expect("pipeline");
    let a1 = client.call(p0, 2, 0, None).expect("call");
    let mut log = pump(&mut client, &mut server);
    client.release(p0).expect("release");
    client.drop_answer(a1).expect("drop");
    client.drop_answer(a0).expect("drop");
    log.extend(pump(&mut client, &mut server));
    client.release(boot).expect("release");
    log.extend(pump(&mut client, &mut server));
    log
}

/// The variant name, read with `capnp::serialize::read_message` and capnp-rpc's own
/// generated `rpc_capnp`, independently of the crate's describer.
fn kind(bytes: &[u8]) -> &'static str {
    let reader =
        capnp::serialize::read_message(&mut &bytes[..], capnp::message::ReaderOptions::new())
            .expect("a framed message");
    let root: message::Reader = reader.get_root().expect("an rpc Message");
    match root.which().expect("a known variant") {
        message::Unimplemented(_) => "Unimplemented",
        message::Abort(_) => "Abort",
        message::Call(_) => "Call",
        message::Return(_) => "Return",
        message::Finish(_) => "Finish",
        message::Resolve(_) => "Resolve",
        message::Release(_) => "Release",
        message::Bootstrap(_) => "Bootstrap",
        message::Disembargo(_) => "Disembargo",
        _ => "other",
    }
}

#[test]
fn every_outgoing_message_decodes_as_an_rpc_message() {
    let log = short_exchange();
    let kinds: Vec<String> = log
        .iter()
        .map(|(from, m)| format!("{from:?} {}", kind(m)))
        .collect();
    assert_eq!(
        kinds,
        vec![
            "A Bootstrap",
            "A Call",
            "A Call",
            "B Return",
            "B Return",
            "B Return",
            "A Release",
            "A Release",
            "A Finish",
            "A Release",
            "A Finish",
            "A Finish",
        ],
    );
    let described: Vec<String> = log
        .iter()
        .map(|(from, m)| format!("{from:?} {}", describe_message(m).expect("describes")))
        .collect();
    assert_eq!(
        described,
        vec![
            "A Bootstrap(q=0)",
            "A Call(q=1 target=answer(0) iface=0xa12aca85185c061a method=0 caps=[])",
            "A Call(q=2 target=answer(1.0) iface=0xa12aca85185c061a method=0 caps=[])",
            "B Return(a=0 results caps=[senderHosted(0)] releaseParamCaps=true)",
            "B Return(a=1 results caps=[senderHosted(1)] releaseParamCaps=false)",
            "B Return(a=2 results caps=[senderHosted(2)] releaseParamCaps=false)",
            // capnp-rpc releases the bootstrap import at once: calls on the bootstrap cap keep
            // targeting the bootstrap question. Then each dropped answer releases the result
            // cap the driver was holding for it and finishes its question.
            "A Release(id=0 count=1)",
            "A Release(id=2 count=1)",
            "A Finish(q=2 releaseResultCaps=false)",
            "A Release(id=1 count=1)",
            "A Finish(q=1 releaseResultCaps=false)",
            "A Finish(q=0 releaseResultCaps=false)",
        ],
    );
    // Whole framed messages: the segment table says how long each is.
    for (_, m) in &log {
        let segments = u32::from_le_bytes([m[0], m[1], m[2], m[3]]) as usize + 1;
        let table = (4 + 4 * segments).div_ceil(8) * 8;
        let words: usize = (0..segments)
            .map(|i| {
                let at = 4 + 4 * i;
                u32::from_le_bytes([m[at], m[at + 1], m[at + 2], m[at + 3]]) as usize
            })
            .sum();
        assert_eq!(m.len(), table + 8 * words);
    }
}

/// A tiny deterministic generator (xorshift64*), so the garbage is the same every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Delivers `bad` to a server that has already served one call, and checks the vat closes
/// (or ignores it) without panicking. Returns the abort reason, if any.
fn feed(bad: Vec<u8>) -> Option<String> {
    let mut client = CapnpRpcVat::new(false);
    let mut server = CapnpRpcVat::new(true);
    let boot = client.bootstrap();
    let a0 = client.call(boot, 1, 0, None).expect("call");
    pump(&mut client, &mut server);
    assert!(matches!(client.poll_answer(a0), Ok(Some(Ok(_)))));
    server.deliver(bad);
    server.run_until_stalled();
    // Whatever the server said goes to the client, which must not panic either.
    pump(&mut server, &mut client);
    server.abort_reason()
}

#[test]
fn garbage_bytes_abort_the_connection_without_panicking() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("short", vec![0, 0, 0]),
        (
            "huge segment count",
            vec![0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0],
        ),
        (
            "segment longer than the bytes",
            vec![0, 0, 0, 0, 0xff, 0xff, 0, 0],
        ),
        ("empty message", vec![0, 0, 0, 0, 0, 0, 0, 0]),
        (
            "null root",
            vec![0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
        (
            "struct pointer out of bounds",
            vec![0, 0, 0, 0, 1, 0, 0, 0, 0x10, 0, 0, 0, 3, 0, 1, 0],
        ),
        ("ascii", b"hello, capnp-rpc, this is not a message".to_vec()),
    ];
    for (name, bytes) in cases {
        let reason = feed(bytes);
        println!("{name}: {reason:?}");
        assert!(reason.is_some(), "{name}: a malformed message must abort");
    }
    let mut rng = Rng(0x5eed);
    for _ in 0..200 {
        let len = rng.below(200) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        feed(bytes);
    }
}

#[test]
fn trailing_bytes_after_a_message_are_rejected() {
    let log = short_exchange();
    let mut call = log[1].1.clone();
    call.extend_from_slice(&[0; 8]);
    assert!(describe_message(&call).is_err());
    let reason = feed(call).expect("aborts");
    assert!(reason.contains("after the end of the message"), "{reason}");
}

#[test]
fn an_abort_from_the_peer_is_reported() {
    let mut abort = capnp::message::Builder::new_default();
    {
        let root: message::Builder = abort.init_root();
        let mut e = root.init_abort();
        e.set_reason("test says goodbye");
        e.set_type(capnp_rpc::rpc_capnp::exception::Type::Overloaded);
    }
    let bytes = capnp::serialize::write_message_to_words(&abort);
    let reason = feed(bytes).expect("aborts");
    assert_eq!(reason, "Overloaded: remote exception: test says goodbye");
}

/// Runs a fixed conversation, carrying messages one at a time, and lets `tamper` replace the
/// `k`-th message carried (counting both directions).
fn conversation_with(k: usize, tamper: &mut dyn FnMut(Vec<u8>) -> Vec<u8>) {
    let mut client = CapnpRpcVat::new(true);
    let mut server = CapnpRpcVat::new(true);
    let boot = client.bootstrap();
    let mine = client.local_probe();
    let a0 = client.call(boot, 1, 0, Some(mine)).expect("call");
    let p0 = client.pipeline_cap(a0).expect("pipeline");
    let a1 = client.call(p0, 2, 0, None).expect("call");
    let a2 = client.call(boot, 1, 1, None).expect("call");
    let back = server.bootstrap();
    let b0 = server.call(back, 5, 0, None).expect("call");
    let mut carried = 0;
    for round in 0..50 {
        client.run_until_stalled();
        server.run_until_stalled();
        if round == 3 {
            client.release(p0).expect("release");
            client.drop_answer(a1).expect("drop");
            server.drop_answer(b0).expect("drop");
        }
        for m in client.take_outgoing() {
            let m = if carried == k { tamper(m) } else { m };
            carried += 1;
            server.deliver(m);
        }
        for m in server.take_outgoing() {
            let m = if carried == k { tamper(m) } else { m };
            carried += 1;
            client.deliver(m);
        }
    }
    let _ = (client.poll_answer(a0), client.poll_answer(a2));
    let _ = (
        client.arrivals(),
        server.arrivals(),
        client.closed(),
        server.closed(),
    );
}

#[test]
fn mutated_messages_do_not_panic() {
    // Count the messages of the untampered conversation.
    let mut total = 0;
    while total < 1000 {
        let mut hit = false;
        conversation_with(total, &mut |m| {
            hit = true;
            m
        });
        if !hit {
            break;
        }
        total += 1;
    }
    assert!(total > 10, "the conversation carries {total} messages");
    let mut rng = Rng(0xfeed_beef);
    let mut panics = Vec::new();
    for trial in 0..600 {
        let k = rng.below(total as u64) as usize;
        let flips = 1 + rng.below(4);
        let seed = rng.next();
        let outcome = std::panic::catch_unwind(|| {
            let mut r = Rng(seed | 1);
            conversation_with(k, &mut |mut m| {
                // Leave the segment table alone half the time so the body gets parsed.
                let start = if r.below(2) == 0 { 8.min(m.len()) } else { 0 };
                for _ in 0..flips {
                    if m.len() > start {
                        let at = start + r.below((m.len() - start) as u64) as usize;
                        m[at] ^= 1 << r.below(8);
                    }
                }
                m
            });
        });
        if outcome.is_err() {
            panics.push((trial, k, seed));
        }
    }
    assert!(
        panics.is_empty(),
        "capnp-rpc panicked on mutated messages: {panics:?}"
    );
}

fn build(fill: impl FnOnce(message::Builder)) -> Vec<u8> {
    let mut b = capnp::message::Builder::new_default();
    fill(b.init_root());
    capnp::serialize::write_message_to_words(&b)
}

/// Well-formed messages that make no sense in the conversation: unknown ids, reused ids,
/// Level 3 messages. Each is delivered to a server that has answered one call.
#[test]
fn nonsensical_messages_do_not_panic() {
    use capnp_rpc::rpc_capnp::disembargo;
    let iface = 0xa12a_ca85_185c_061a_u64; // Probe's interface id
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "return for an unknown question",
            build(|m| {
                let mut r = m.init_return();
                r.set_answer_id(99);
                r.init_results();
            }),
        ),
        (
            "finish for an unknown answer",
            build(|m| m.init_finish().set_question_id(42)),
        ),
        (
            "release of an unknown export",
            build(|m| {
                let mut r = m.init_release();
                r.set_id(77);
                r.set_reference_count(5);
            }),
        ),
        (
            "release of too many references",
            build(|m| {
                let mut r = m.init_release();
                r.set_id(0);
                r.set_reference_count(1000);
            }),
        ),
        (
            "call on an unknown import",
            build(|m| {
                let mut c = m.init_call();
                c.set_question_id(50);
                c.set_interface_id(iface);
                c.reborrow().init_target().set_imported_cap(99);
                c.init_params();
            }),
        ),
        (
            "call on an unknown answer",
            build(|m| {
                let mut c = m.init_call();
                c.set_question_id(50);
                c.set_interface_id(iface);
                c.reborrow()
                    .init_target()
                    .init_promised_answer()
                    .set_question_id(99);
                c.init_params();
            }),
        ),
        (
            "call reusing an answer id",
            build(|m| {
                let mut c = m.init_call();
                c.set_question_id(0);
                c.set_interface_id(iface);
                c.reborrow()
                    .init_target()
                    .init_promised_answer()
                    .set_question_id(0);
                c.init_params();
            }),
        ),
        (
            "call with an unknown method",
            build(|m| {
                let mut c = m.init_call();
                c.set_question_id(51);
                c.set_interface_id(iface);
                c.set_method_id(9);
                c.reborrow()
                    .init_target()
                    .init_promised_answer()
                    .set_question_id(0);
                c.init_params();
            }),
        ),
        (
            "call passing an unknown receiverHosted cap",
            build(|m| {
                let mut c = m.init_call();
                c.set_question_id(52);
                c.set_interface_id(iface);
                c.reborrow()
                    .init_target()
                    .init_promised_answer()
                    .set_question_id(0);
                let mut p = c.init_params();
                p.reborrow()
                    .init_cap_table(1)
                    .get(0)
                    .set_receiver_hosted(1234);
            }),
        ),
        (
            "bootstrap reusing an answer id",
            build(|m| m.init_bootstrap().set_question_id(0)),
        ),
        (
            "resolve of an unknown promise",
            build(|m| {
                let mut r = m.init_resolve();
                r.set_promise_id(99);
                r.init_cap().set_sender_hosted(3);
            }),
        ),
        (
            "disembargo loopback on an unknown import",
            build(|m| {
                let mut d = m.init_disembargo();
                d.reborrow().init_target().set_imported_cap(99);
                d.init_context().set_receiver_loopback(99);
            }),
        ),
        (
            "disembargo senderLoopback on an answer",
            build(|m| {
                let mut d = m.init_disembargo();
                d.reborrow()
                    .init_target()
                    .init_promised_answer()
                    .set_question_id(0);
                let _: disembargo::context::Builder = d.init_context();
            }),
        ),
        (
            "provide",
            build(|m| {
                m.init_provide().set_question_id(60);
            }),
        ),
        (
            "accept",
            build(|m| {
                m.init_accept().set_question_id(61);
            }),
        ),
        (
            "join",
            build(|m| {
                m.init_join().set_question_id(62);
            }),
        ),
        (
            "unimplemented echo of a call",
            build(|m| {
                let mut c = m.init_unimplemented().init_call();
                c.set_question_id(0);
                c.reborrow().init_target().set_imported_cap(0);
            }),
        ),
    ];
    let mut panics = Vec::new();
    for (name, bytes) in cases {
        match std::panic::catch_unwind(|| feed(bytes)) {
            Ok(reason) => println!("{name}: {reason:?}"),
            Err(_) => panics.push(name),
        }
    }
    assert!(panics.is_empty(), "capnp-rpc panicked on: {panics:?}");
}
