//! Two capnp-rpc vats wired to each other through the driver.

mod common;

use capnp_peer::{CapHandle, CapnpRpcVat, VatError};
use common::{pump, pump_kinds};

fn ok(outcome: Option<capnp_peer::AnswerOutcome>) -> (u64, CapHandle) {
    match outcome {
        Some(Ok(v)) => v,
        other => panic!("expected a returned answer, got {other:?}"),
    }
}

#[test]
fn bootstrap_calls_and_pipelining_arrive_in_order() {
    let mut server = CapnpRpcVat::new(true);
    let mut client = CapnpRpcVat::new(false);

    let boot = client.bootstrap();
    let a0 = client.call(boot, 1, 0, None).expect("call");
    // Pipelined on an answer that has not returned: the call targets promisedAnswer(a0).cap.
    let p0 = client.pipeline_cap(a0).expect("pipeline");
    let a1 = client.call(p0, 2, 0, None).expect("call");
    let a2 = client.call(boot, 1, 1, None).expect("call");
    let a3 = client.call(p0, 2, 1, None).expect("call");
    assert_eq!(
        client.poll_answer(a0),
        Ok(None),
        "nothing runs between driver calls"
    );

    let kinds = pump_kinds(&mut client, &mut server);
    assert!(
        kinds.iter().any(|k| k.contains("target=answer(")),
        "{kinds:#?}"
    );

    let (n0, c0) = ok(client.poll_answer(a0).expect("known"));
    let (n1, _) = ok(client.poll_answer(a1).expect("known"));
    let (n2, _) = ok(client.poll_answer(a2).expect("known"));
    let (n3, _) = ok(client.poll_answer(a3).expect("known"));
    assert_eq!(
        (n0, n2),
        (0, 1),
        "calls on the bootstrap object counted in order"
    );
    assert_eq!((n1, n3), (0, 1), "pipelined calls counted in order");
    // Polling again gives the same handle.
    assert_eq!(client.poll_answer(a0), Ok(Some(Ok((n0, c0)))));

    let arrivals = server.arrivals();
    assert_eq!(arrivals[&0], vec![(1, 0), (1, 1)]);
    assert_eq!(arrivals[&1], vec![(2, 0), (2, 1)]);
    assert!(client.arrivals().is_empty(), "the client serves nothing");

    // The returned cap and the pipelined cap name the same object.
    let a4 = client.call(c0, 2, 2, None).expect("call");
    pump(&mut client, &mut server);
    assert_eq!(ok(client.poll_answer(a4).expect("known")).0, 2);
    assert_eq!(server.arrivals()[&1], vec![(2, 0), (2, 1), (2, 2)]);
    assert!(!client.is_closed() && !server.is_closed());
}

#[test]
fn release_and_drop_answer_send_release_and_finish() {
    let mut server = CapnpRpcVat::new(true);
    let mut client = CapnpRpcVat::new(false);
    let boot = client.bootstrap();
    let a0 = client.call(boot, 7, 0, None).expect("call");
    let kinds = pump_kinds(&mut client, &mut server);
    // capnp-rpc 0.27.3 never resolves a bootstrap capability: calls on it keep targeting
    // promisedAnswer(bootstrap question), and the import the Return carried is released at
    // once.
    assert!(
        kinds.iter().any(|k| k == "A Release(id=0 count=1)"),
        "{kinds:#?}"
    );
    let (_, cap) = ok(client.poll_answer(a0).expect("known"));

    client.drop_answer(a0).expect("drop");
    client.release(cap).expect("release");
    let kinds = pump_kinds(&mut client, &mut server);
    assert!(
        kinds.iter().any(|k| k.starts_with("A Finish(")),
        "{kinds:#?}"
    );
    assert!(
        kinds.iter().any(|k| k.starts_with("A Release(")),
        "{kinds:#?}"
    );

    // Dropping the bootstrap capability finishes the bootstrap question.
    client.release(boot).expect("release");
    let kinds = pump_kinds(&mut client, &mut server);
    assert_eq!(
        kinds,
        vec!["A Finish(q=0 releaseResultCaps=false)".to_string()]
    );

    // Stale handles are typed errors, not panics.
    assert_eq!(client.release(boot), Err(VatError::UnknownCap(boot)));
    assert_eq!(
        client.call(boot, 0, 0, None),
        Err(VatError::UnknownCap(boot))
    );
    assert_eq!(client.poll_answer(a0), Err(VatError::UnknownAnswer(a0)));
    assert_eq!(client.pipeline_cap(a0), Err(VatError::UnknownAnswer(a0)));
    assert_eq!(client.drop_answer(a0), Err(VatError::UnknownAnswer(a0)));
}

#[test]
fn dropping_an_unreturned_answer_cancels_it() {
    let mut server = CapnpRpcVat::new(true);
    let mut client = CapnpRpcVat::new(false);
    let boot = client.bootstrap();
    let a0 = client.call(boot, 1, 0, None).expect("call");
    client.drop_answer(a0).expect("drop");
    let kinds = pump_kinds(&mut client, &mut server);
    assert!(kinds.iter().any(|k| k.starts_with("A Call(")), "{kinds:#?}");
    assert!(
        kinds.iter().any(|k| k.starts_with("A Finish(")),
        "{kinds:#?}"
    );
    // The call still reached the server (it was sent before the Finish).
    assert_eq!(server.arrivals()[&0], vec![(1, 0)]);
}

#[test]
fn a_local_capability_passed_as_arg_comes_back_and_is_called_locally() {
    let mut server = CapnpRpcVat::new(true);
    let mut client = CapnpRpcVat::new(false);
    let boot = client.bootstrap();
    let mine = client.local_probe();
    let a0 = client.call(boot, 1, 0, Some(mine)).expect("call");
    // Pipelined calls on the echoed cap go to the server, which forwards them back to us.
    let echoed = client.pipeline_cap(a0).expect("pipeline");
    let a1 = client.call(echoed, 9, 0, None).expect("call");
    let a2 = client.call(echoed, 9, 1, None).expect("call");
    pump(&mut client, &mut server);
    let (_, back) = ok(client.poll_answer(a0).expect("known"));
    let a3 = client.call(back, 9, 2, None).expect("call");
    pump(&mut client, &mut server);
    for a in [a1, a2, a3] {
        ok(client.poll_answer(a).expect("known"));
    }
    // E-order holds at our local object across the detour through the server and the
    // embargo on the resolved promise.
    assert_eq!(client.arrivals()[&0], vec![(9, 0), (9, 1), (9, 2)]);
    assert_eq!(server.arrivals()[&0], vec![(1, 0)]);
}

#[test]
fn bootstrap_without_a_bootstrap_object_fails_the_calls() {
    let mut a = CapnpRpcVat::new(false);
    let mut b = CapnpRpcVat::new(false);
    let boot = a.bootstrap();
    let a0 = a.call(boot, 1, 0, None).expect("call");
    pump(&mut a, &mut b);
    match a.poll_answer(a0).expect("known") {
        Some(Err(e)) => assert!(e.contains("no bootstrap capability"), "{e}"),
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(!a.is_closed(), "an exception is not an abort");
}

#[test]
fn both_vats_can_serve_and_call() {
    let mut a = CapnpRpcVat::new(true);
    let mut b = CapnpRpcVat::new(true);
    let ba = a.bootstrap();
    let bb = b.bootstrap();
    let x = a.call(ba, 1, 0, None).expect("call");
    let y = b.call(bb, 2, 0, None).expect("call");
    pump(&mut a, &mut b);
    ok(a.poll_answer(x).expect("known"));
    ok(b.poll_answer(y).expect("known"));
    assert_eq!(b.arrivals()[&0], vec![(1, 0)]);
    assert_eq!(a.arrivals()[&0], vec![(2, 0)]);
}

#[test]
fn cutting_the_link_rejects_outstanding_answers() {
    let mut server = CapnpRpcVat::new(true);
    let mut client = CapnpRpcVat::new(false);
    let boot = client.bootstrap();
    pump(&mut client, &mut server);
    let a0 = client.call(boot, 1, 0, None).expect("call");
    // The call is sent but never delivered: the link goes down first.
    let lost = client.take_outgoing();
    assert_eq!(lost.len(), 1);
    client.disconnect();
    server.disconnect();
    client.run_until_stalled();
    server.run_until_stalled();
    assert!(
        client.take_outgoing().is_empty(),
        "nothing leaves a cut link"
    );
    match client.poll_answer(a0).expect("known") {
        Some(Err(e)) => assert!(e.contains("Disconnected"), "{e}"),
        other => panic!("expected an error, got {other:?}"),
    }
    let closed = client.closed().expect("closed");
    assert!(closed.link_cut);
    assert_eq!(
        closed.abort_reason.as_deref(),
        Some("Disconnected: Peer disconnected.")
    );
    assert_eq!(client.system_result(), Some(Ok(())));
    // A new bootstrap after the close is broken, not hung.
    let again = client.bootstrap();
    let a1 = client.call(again, 1, 1, None).expect("call");
    client.run_until_stalled();
    assert!(matches!(client.poll_answer(a1), Ok(Some(Err(_)))));
}

#[test]
fn shutdown_sends_an_abort_that_closes_the_peer() {
    let mut server = CapnpRpcVat::new(true);
    let mut client = CapnpRpcVat::new(false);
    let boot = client.bootstrap();
    let a0 = client.call(boot, 1, 0, None).expect("call");
    pump(&mut client, &mut server);
    ok(client.poll_answer(a0).expect("known"));
    let a1 = client.call(boot, 1, 1, None).expect("call");
    client.shutdown();
    let kinds = pump_kinds(&mut client, &mut server);
    // The Call was sent before the shutdown ran; the Abort follows it.
    assert_eq!(
        kinds
            .iter()
            .filter(|k| k.starts_with("A "))
            .collect::<Vec<_>>()
            .last()
            .map(|s| s.as_str()),
        Some("A Abort(Disconnected \"client requested disconnect\")"),
        "{kinds:#?}"
    );
    assert_eq!(
        client.abort_reason().as_deref(),
        Some("Disconnected: client requested disconnect")
    );
    assert_eq!(
        server.abort_reason().as_deref(),
        Some("Disconnected: remote exception: client requested disconnect")
    );
    assert!(matches!(client.poll_answer(a1), Ok(Some(Err(_)))));
    // The server, aborted by the peer, tried to answer with its own Abort; the client had
    // already shut down, so it was dropped on delivery.
    assert!(client.dropped_messages() > 0 || kinds.iter().any(|k| k.starts_with("B Abort")));
}

#[test]
fn the_arrival_log_orders_calls_across_objects_and_says_what_each_returned() {
    use capnp_peer::{Answered, Arrival};
    let mut server = CapnpRpcVat::new(true);
    let mut client = CapnpRpcVat::new(true);
    let boot = client.bootstrap();
    let (mine, n) = client.local_probe_with_id();
    assert_eq!(n, 1, "object 0 is the client's bootstrap object");
    let a0 = client.call(boot, 1, 0, None).expect("call");
    let p0 = client.pipeline_cap(a0).expect("pipeline");
    client.call(p0, 2, 0, Some(mine)).expect("call");
    client.call(boot, 1, 1, Some(mine)).expect("call");
    pump(&mut client, &mut server);
    let at = |object, ref_id, seq, answered| Arrival {
        object,
        ref_id,
        seq,
        answered,
    };
    assert_eq!(
        server.arrival_log(0),
        vec![
            at(0, 1, 0, Answered::Fresh(1)),
            at(1, 2, 0, Answered::Arg),
            at(0, 1, 1, Answered::Arg),
        ]
    );
    assert_eq!(server.arrival_log(2), vec![at(0, 1, 1, Answered::Arg)]);
    assert!(server.arrival_log(9).is_empty());
    // The log agrees with the per-object view.
    assert_eq!(server.arrivals()[&0], vec![(1, 0), (1, 1)]);
    assert_eq!(server.arrivals()[&1], vec![(2, 0)]);
}
