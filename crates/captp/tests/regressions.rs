//! Shapes that once broke the engine's E-order or left state behind, each scripted action by
//! action and delivery by delivery (`script::Net`), so that they do not depend on the
//! simulation's workload or decision stream. Each test names the rule it guards (see
//! `docs/decisions.md`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod script;

use captp::{VatConfig, VatId};
use script::{Net, object};

const A: VatId = 0;
const B: VatId = 1;
const C: VatId = 2;

fn two_vats() -> Net {
    let mut net = Net::new(vec![VatConfig::default(), VatConfig::default()]);
    net.connect(A, B, false);
    net
}

/// One path of one answer names one promise for the answer's whole life.
///
/// B forwards A's pipelined call to A (B's answer becomes B's question to A), then A answers
/// that question with B's own bootstrap: B's promise on that path resolves back into B, and
/// must be embargoed because A's first call went down it. A's second call on the same path,
/// arriving after the resolution, must wait behind the embargo. The promise node that carried
/// the first call was held only by that call and went away after it was sent, so the second
/// call found no embargo and overtook the first.
#[test]
fn a_later_pipelined_call_waits_behind_the_embargo_of_an_earlier_one() {
    let mut net = two_vats();
    let boot = net.vat(A).bootstrap(B);
    let b0 = net.vat(A).pipeline(&boot, &[]);
    // A sends its own object to B and pipelines two calls on the answer (B will return the
    // object, so those calls come back to A).
    let a1 = net.vat(A).local_cap(object(A, 1));
    let echo = net.call(A, &b0, 1, 0, Some(&a1));
    let p4 = net.vat(A).pipeline(&echo, &[0]);
    let _c0 = net.call(A, &p4, 4, 0, None);
    let c1 = net.call(A, &p4, 4, 1, None);
    net.deliver_all(A, B);
    // B returns A's object: the two pipelined calls go on to A as B's own questions.
    let owed = net.take_owed(B, 1, 0);
    net.answer_with_arg(B, owed);
    // A pipelines call #0 on reference 5 through the second call's answer (a path into B's
    // answer, which now follows B's question to A).
    let p5 = net.vat(A).pipeline(&c1, &[0]);
    let _r0 = net.call(A, &p5, 5, 0, None);
    net.deliver_all(B, A);
    assert_eq!(net.order(4), vec![0, 1]);
    // A answers B's question for call #1 on reference 4 with B's own bootstrap: B's answer
    // resolves back into B.
    let owed = net.take_owed(A, 4, 1);
    let b0_copy = net.vat(A).clone_cap(&b0);
    net.answer_with(A, owed, b0_copy);
    // Call #1 on reference 5, on the same path, after the resolution was sent.
    let _r1 = net.call(A, &p5, 5, 1, None);
    // B receives, in order: call #0 (forwarded to A), the Return (loopback), call #1.
    net.deliver_all(A, B);
    net.settle_everything();
    assert_eq!(net.order(5), vec![0, 1], "arrivals: {:?}", net.arrivals);
    assert!(net.errors.is_empty(), "{:?}", net.errors);
}

fn three_vats_with_handoff() -> Net {
    let config = VatConfig {
        third_party_handoff: true,
        bug: None,
    };
    let mut net = Net::new(vec![config.clone(), config.clone(), config]);
    net.connect(A, B, true);
    net.connect(A, C, true);
    net.connect(B, C, true);
    net
}

/// An accept-disembargo that names a path into an answer belongs to the `Provide` behind the
/// capability that answer returned.
///
/// Alice (A) returns Carol's (C) capability X to Bob (B) twice, in the results of two calls
/// on which Bob had already pipelined calls: two provisions of one capability to one
/// recipient, each accepted with an embargo. Bob's two `Disembargo{accept}`s name the two
/// answers; Alice must pass each on as `Disembargo{provide}` for its own `Provide`. Picking
/// the `Provide` by (recipient, capability) named the first one twice, and the second
/// `Accept` waited for ever.
#[test]
fn an_accept_disembargo_on_an_answer_names_that_answers_provide() {
    let mut net = three_vats_with_handoff();
    // Alice holds Carol's bootstrap X, settled.
    let boot_c = net.vat(A).bootstrap(C);
    let x = net.vat(A).pipeline(&boot_c, &[]);
    net.deliver_all(A, C);
    net.deliver_all(C, A);
    // Bob calls Alice twice and pipelines a call on each answer's capability.
    let boot_a = net.vat(B).bootstrap(A);
    let alice = net.vat(B).pipeline(&boot_a, &[]);
    let q1 = net.call(B, &alice, 1, 0, None);
    let p1 = net.vat(B).pipeline(&q1, &[0]);
    let c11 = net.call(B, &p1, 11, 0, None);
    let q2 = net.call(B, &alice, 1, 1, None);
    let p2 = net.vat(B).pipeline(&q2, &[0]);
    let c12 = net.call(B, &p2, 12, 0, None);
    net.deliver_all(B, A);
    // Alice answers both with X: two Provides to Carol, two thirdPartyHosted to Bob.
    for seq in [0, 1] {
        let owed = net.take_owed(A, 1, seq);
        let copy = net.vat(A).clone_cap(&x);
        net.answer_with(A, owed, copy);
    }
    // Bob learns both; each promise carried a call through Alice, so each Accept is
    // embargoed and each sends Alice a Disembargo{accept}, which Alice handles at once.
    net.deliver_all(A, B);
    net.deliver_all(B, A);
    net.vat(B).release(p1);
    net.vat(B).release(p2);
    net.vat(B).finish(q1);
    net.vat(B).finish(q2);
    net.vat(B).finish(c11);
    net.vat(B).finish(c12);
    net.vat(B).release(alice);
    net.vat(B).finish(boot_a);
    net.vat(A).release(x);
    net.vat(A).finish(boot_c);
    net.settle_everything();
    assert!(net.errors.is_empty(), "{:?}", net.errors);
    assert_eq!(net.order(11), vec![0]);
    assert_eq!(net.order(12), vec![0]);
    net.assert_quiet();
}

/// An accept-disembargo whose `Provide` is already over is dropped, not an error.
///
/// Bob (played by hand) receives Carol's capability from Alice in the results of a call,
/// gives up the vine at once (so Alice finishes the `Provide`), and then asks Alice to
/// disembargo his acceptance through that answer. The provision is gone at Carol, and so is
/// the embargo's purpose; Alice treated the target as never provided and aborted Bob's
/// connection.
#[test]
fn an_accept_disembargo_for_a_finished_provide_is_dropped() {
    use captp::wire::{
        Bootstrap, Call, CapDescriptor, Disembargo, DisembargoContext, Message, MessageTarget,
        Payload, PipelineOp, PromisedAnswer, Release, ReturnResult, SendResultsTo,
    };
    let mut net = three_vats_with_handoff();
    let boot_c = net.vat(A).bootstrap(C);
    let x = net.vat(A).pipeline(&boot_c, &[]);
    net.deliver_all(A, C);
    net.deliver_all(C, A);
    // Bob: Alice's bootstrap, then a call on it.
    net.inject(
        B,
        A,
        Message::Bootstrap(Bootstrap {
            question_id: 0,
            deprecated_object_id: Default::default(),
        }),
    );
    let Message::Return(r) = net.take(A, B) else {
        panic!("Alice answers the bootstrap");
    };
    let ReturnResult::Results(p) = r.result else {
        panic!("with results");
    };
    let Some(&CapDescriptor::SenderHosted(alice)) = p.cap_table.first() else {
        panic!("her bootstrap object");
    };
    net.inject(
        B,
        A,
        Message::Call(Call {
            question_id: 1,
            target: MessageTarget::ImportedCap(alice),
            interface_id: captp::probe::PROBE_INTERFACE_ID,
            method_id: captp::probe::CALL_METHOD,
            allow_third_party_tail_call: false,
            no_promise_pipelining: false,
            only_promise_pipeline: false,
            params: Payload {
                content: script::params(1, 0, false),
                cap_table: Vec::new(),
            },
            send_results_to: SendResultsTo::Caller,
        }),
    );
    // Alice answers with Carol's X: a Provide to Carol, a thirdPartyHosted to Bob.
    let owed = net.take_owed(A, 1, 0);
    let copy = net.vat(A).clone_cap(&x);
    net.answer_with(A, owed, copy);
    let Message::Return(r) = net.take(A, B) else {
        panic!("Alice returns the call");
    };
    let ReturnResult::Results(p) = r.result else {
        panic!("with results");
    };
    let Some(&CapDescriptor::ThirdPartyHosted { vine_id, .. }) = p.cap_table.first() else {
        panic!("a third-party capability: {:?}", p.cap_table);
    };
    // Bob gives up the vine: Alice finishes the Provide.
    net.inject(
        B,
        A,
        Message::Release(Release {
            id: vine_id,
            reference_count: 1,
        }),
    );
    assert_eq!(net.deliver(A, C), "provide");
    assert_eq!(net.deliver(A, C), "finish", "Alice finishes the Provide");
    net.deliver_all(C, A);
    // ...and only then asks for the accept-disembargo through the answer.
    net.inject(
        B,
        A,
        Message::Disembargo(Disembargo {
            target: MessageTarget::PromisedAnswer(PromisedAnswer {
                question_id: 1,
                transform: vec![PipelineOp::GetPointerField(0)],
            }),
            context: DisembargoContext::Accept,
        }),
    );
    assert!(net.errors.is_empty(), "{:?}", net.errors);
    assert!(
        net.vats[A as usize].is_connected(B),
        "Alice kept Bob's connection"
    );
    assert_ne!(net.head(A, B), Some("abort"));
    net.vat(A).release(x);
    net.vat(A).finish(boot_c);
}

/// While its `Provide` is open, an accept-disembargo goes to that `Provide`'s provider, even
/// when our own route to the capability no longer ends there.
///
/// Bob (B) passes Alice (A) a promise P for Carol's (C) bootstrap X, and Alice returns it:
/// Bob's later messages on that answer path go to P itself (pinned). Bob passes the answer's
/// capability back to Alice in a second call and pipelines a call on that call's answer. P
/// then resolves (Bob hands X to Alice; her `Accept` completes), and Alice returns the
/// capability, now X, to Bob: a `Provide` to Carol and a `thirdPartyHosted` to Bob, whose
/// `Accept` is embargoed. Bob's `Disembargo{accept}` reaches Alice on the pinned route, which
/// ends at P on Bob, not at Carol. Alice sent the `Disembargo{provide}` to where the route
/// ended: Bob knew no such `Provide` and aborted the connection.
#[test]
fn an_accept_disembargo_goes_to_its_provider_when_our_route_has_moved() {
    let mut net = three_vats_with_handoff();
    // Bob: Alice's bootstrap, and P, a promise for Carol's bootstrap X (not answered yet).
    let boot_a = net.vat(B).bootstrap(A);
    let alice = net.vat(B).pipeline(&boot_a, &[]);
    let boot_c = net.vat(B).bootstrap(C);
    let p = net.vat(B).pipeline(&boot_c, &[]);
    // Bob sends P to Alice, who returns it: the answer's path is pinned to Bob's P.
    let q1 = net.call(B, &alice, 1, 0, Some(&p));
    net.deliver_all(B, A);
    let owed = net.take_owed(A, 1, 0);
    net.answer_with_arg(A, owed);
    // Before Bob hears that, he passes the answer's capability back to Alice in a second
    // call, and pipelines a call on that call's answer (through Alice).
    let p1 = net.vat(B).pipeline(&q1, &[0]);
    let q2 = net.call(B, &alice, 2, 0, Some(&p1));
    let p2 = net.vat(B).pipeline(&q2, &[0]);
    let c3 = net.call(B, &p2, 3, 0, None);
    // Carol answers Bob's bootstrap: P resolves to X, which Bob hands to Alice (a `Provide`
    // to Carol, a `Resolve` to Alice).
    net.deliver_all(B, C);
    net.deliver_all(C, B);
    net.deliver_all(B, A);
    assert_eq!(
        net.pending(A, C),
        1,
        "Alice's Accept for X waits on the link to Carol"
    );
    // Alice's Accept completes: her P is X, an import from Carol.
    net.deliver_all(B, C);
    net.deliver_all(A, C);
    net.deliver_all(C, A);
    // Alice returns the second call's argument: X, handed to Bob (a second `Provide`).
    let owed = net.take_owed(A, 2, 0);
    net.answer_with_arg(A, owed);
    assert_eq!(net.deliver(A, C), "finish", "Alice finishes her Accept");
    assert_eq!(net.deliver(A, C), "provide", "and provides X for Bob");
    // Bob learns of the handoff; his call went through Alice, so his `Accept` is embargoed
    // and Alice gets his `Disembargo{accept}`, which she must pass on to Carol.
    net.deliver_all(A, B);
    net.deliver_all(B, A);
    assert!(net.errors.is_empty(), "{:?}", net.errors);
    assert!(
        net.vats[A as usize].is_connected(B) && net.vats[B as usize].is_connected(A),
        "Alice and Bob kept their connection"
    );
    for c in [alice, p, p1, p2] {
        net.vat(B).release(c);
    }
    for a in [boot_a, boot_c, q1, q2, c3] {
        net.vat(B).finish(a);
    }
    net.settle_everything();
    assert!(net.errors.is_empty(), "{:?}", net.errors);
    assert_eq!(net.order(3), vec![0]);
    assert!(
        net.delivered.iter().any(|(f, t, m)| (*f, *t) == (A, C)
            && matches!(
                m,
                captp::wire::Message::Disembargo(captp::wire::Disembargo {
                    context: captp::wire::DisembargoContext::Provide(_),
                    ..
                })
            )),
        "Alice passed the accept-disembargo on to Carol"
    );
    net.assert_quiet();
}

/// Messages from a peer to a promise we resolved to one of that peer's own promises go to
/// exactly that promise, even after it resolves further (rpc.capnp's Tribble 4-way race
/// rule).
///
/// Bob (B) exports a promise PB to Alice (A) and resolves it to Alice's own promise PA. Alice
/// meanwhile resolves PA to Carol's (C) capability X, handing it to Bob directly (three-party
/// handoff). Alice's calls on PB that reach Bob after that must go back to Alice's PA, as Bob
/// said: Bob short-cut them into his own handoff of X, and reflected Alice's loopback embargo
/// on PB while they still waited for it; Alice's next call then reached Carol directly,
/// ahead of them.
#[test]
fn calls_to_a_promise_resolved_to_the_peers_promise_go_to_that_promise() {
    let mut net = three_vats_with_handoff();
    // Alice holds Carol's X, settled, and Bob's bootstrap.
    let boot_c = net.vat(A).bootstrap(C);
    let x = net.vat(A).pipeline(&boot_c, &[]);
    net.deliver_all(A, C);
    net.deliver_all(C, A);
    let boot_b = net.vat(A).bootstrap(B);
    let b0 = net.vat(A).pipeline(&boot_b, &[]);
    // PA: a promise of Alice's own (a pipeline on a call to her own object, still owed).
    let a9 = net.vat(A).local_cap(object(A, 9));
    let la = net.call(A, &a9, 90, 0, None);
    let pa = net.vat(A).pipeline(&la, &[0]);
    // Alice hands PA to Bob; Bob answers with PB, a promise of his own.
    let q = net.call(A, &b0, 1, 0, Some(&pa));
    net.deliver_all(A, B);
    let b9 = net.vat(B).local_cap(object(B, 9));
    let lb = net.call(B, &b9, 91, 0, None);
    let pb = net.vat(B).pipeline(&lb, &[0]);
    let owed = net.take_owed(B, 1, 0);
    let pa_at_b = owed.arg.as_ref().map(|c| net.vats[B as usize].clone_cap(c));
    net.answer_with(B, owed, pb);
    net.deliver_all(B, A);
    // Alice calls PB twice; both wait in Bob's PB.
    let pb_at_a = net.vat(A).pipeline(&q, &[0]);
    let mut answers = Vec::new();
    answers.push(net.call(A, &pb_at_a, 5, 0, None));
    answers.push(net.call(A, &pb_at_a, 5, 1, None));
    net.deliver_all(A, B);
    // Bob resolves PB to Alice's PA: the two calls go on to Alice, and Alice is told.
    let owed = net.take_owed(B, 91, 0);
    net.answer_with(B, owed, pa_at_b.expect("PA"));
    // Alice resolves PA to X, handing X to Bob directly; then calls PB twice more, before
    // she hears that PB is her own PA.
    let owed = net.take_owed(A, 90, 0);
    let x_copy = net.vat(A).clone_cap(&x);
    net.answer_with(A, owed, x_copy);
    answers.push(net.call(A, &pb_at_a, 5, 2, None));
    answers.push(net.call(A, &pb_at_a, 5, 3, None));
    // Bob hears of the handoff, then gets calls #2 and #3.
    net.deliver_all(A, B);
    // Alice hears that PB is her PA (loopback: she embargoes PB) and gets calls #0 and #1,
    // which she sends on to Carol.
    net.deliver_all(B, A);
    net.deliver_all(A, B);
    net.deliver_all(B, A);
    // Once the embargo has lifted, Alice's next call goes straight to Carol, first.
    answers.push(net.call(A, &pb_at_a, 5, 4, None));
    net.deliver_all(A, C);
    net.settle_everything();
    assert_eq!(
        net.order(5),
        vec![0, 1, 2, 3, 4],
        "arrivals {:?}",
        net.arrivals
    );
    assert!(net.errors.is_empty(), "{:?}", net.errors);
    for a in answers {
        net.vat(A).finish(a);
    }
    for c in [x, b0, a9, pa, pb_at_a] {
        net.vat(A).release(c);
    }
    for a in [boot_c, boot_b, la, q] {
        net.vat(A).finish(a);
    }
    net.vat(B).release(b9);
    net.vat(B).finish(lb);
    net.settle_everything();
    net.assert_quiet();
}

fn three_vats() -> Net {
    let mut net = Net::new(vec![VatConfig::default(); 3]);
    net.connect(A, B, false);
    net.connect(A, C, false);
    net.connect(B, C, false);
    net
}

/// A disembargo that waited while its sender's connection was lost and made again is
/// dropped, never reflected onto the new connection (which never asked for it: at best an
/// error, at worst it lifts an unrelated embargo of the same ID).
///
/// Bob's (B) loopback disembargo reaches Alice (A) on a route that runs through Alice's own
/// embargo towards Carol (C), and waits there; Alice and Bob reconnect; Carol's reflection
/// then lifts Alice's embargo.
#[test]
fn a_disembargo_from_a_lost_connection_is_not_reflected_on_the_next() {
    let mut net = three_vats();
    let boot_c = net.vat(A).bootstrap(C);
    let c0 = net.vat(A).pipeline(&boot_c, &[]);
    let boot_a = net.vat(B).bootstrap(A);
    let a0 = net.vat(B).pipeline(&boot_a, &[]);
    // Bob passes his object b5 to Alice in a call; Bob pipelines a call on its answer.
    let b5 = net.vat(B).local_cap(object(B, 5));
    let qb = net.call(B, &a0, 1, 0, Some(&b5));
    let p = net.vat(B).pipeline(&qb, &[0]);
    net.deliver_all(B, A);
    // Alice hands b5 on to Carol and answers Bob with a promise for Carol's answer.
    let owed = net.take_owed(A, 1, 0);
    let b5_at_a = owed.arg.as_ref().map(|c| net.vats[A as usize].clone_cap(c));
    let rc = net.call(A, &c0, 2, 0, b5_at_a.as_ref());
    net.vat(A).return_answer(owed.call, &rc).expect("owed");
    if let Some(a) = owed.arg {
        net.vat(A).release(a);
    }
    // Bob's pipelined call follows through Alice to Carol's answer.
    let bc = net.call(B, &p, 7, 0, None);
    net.deliver_all(B, A);
    net.deliver_all(A, C);
    // Carol returns b5 (Alice's export): Alice's promise resolves back into Alice, who
    // embargoes it; the Disembargo to Carol is not delivered yet.
    let owed = net.take_owed(C, 2, 0);
    net.answer_with_arg(C, owed);
    net.deliver_all(C, A);
    // Alice returns b5 to Bob, whose promise resolves back into Bob: his loopback disembargo
    // reaches Alice and waits behind her embargo.
    net.deliver_all(A, B);
    net.deliver_all(B, A);
    // Alice and Bob lose their connection and make a new one.
    net.disconnect(A, B);
    net.connect(A, B, false);
    // Carol reflects Alice's disembargo; Alice's embargo lifts.
    net.deliver_all(A, C);
    net.deliver_all(C, A);
    net.drain();
    assert!(net.errors.is_empty(), "{:?}", net.errors);
    assert!(
        !net.delivered
            .iter()
            .any(|(f, t, m)| (*f, *t) == (A, B) && m.kind() == "disembargo"),
        "Alice reflected a disembargo of the old connection on the new one"
    );
    for c in [c0, b5_at_a.expect("b5")] {
        net.vat(A).release(c);
    }
    for a in [boot_c, rc] {
        net.vat(A).finish(a);
    }
    for c in [a0, b5, p] {
        net.vat(B).release(c);
    }
    for a in [boot_a, qb, bc] {
        net.vat(B).finish(a);
    }
    net.settle_everything();
    net.assert_quiet();
}
