//! Two connections wired back to back (every message goes through the real codec), plus a
//! hand-driven peer for the flags and faults our own side never produces.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::wire::{self, Payload, Release};
use proptest::prelude::*;

const BOOT: ObjectId = 100;

/// Moves messages both ways (through encode/decode) until neither side has anything to say.
fn pump(a: &mut Connection, b: &mut Connection) {
    let mut to_b = a.take_outgoing();
    let mut to_a = b.take_outgoing();
    while !to_a.is_empty() || !to_b.is_empty() {
        for m in std::mem::take(&mut to_b) {
            let m = wire::decode(&wire::encode(&m)).unwrap();
            to_a.extend(b.handle(m).unwrap());
        }
        for m in std::mem::take(&mut to_a) {
            let m = wire::decode(&wire::encode(&m)).unwrap();
            to_b.extend(a.handle(m).unwrap());
        }
    }
}

fn pair() -> (Connection, Connection) {
    (Connection::new(None), Connection::new(Some(BOOT)))
}

/// Client bootstraps the server and finishes the question; returns the bootstrap import.
fn bootstrapped(client: &mut Connection, server: &mut Connection) -> ImportId {
    let q = client.bootstrap().unwrap();
    pump(client, server);
    let events = client.take_events();
    let [
        Event::Returned {
            question,
            outcome: Outcome::Results { caps, .. },
        },
    ] = events.as_slice()
    else {
        panic!("unexpected events {events:?}");
    };
    assert_eq!(*question, q);
    let [Cap::Remote(id)] = caps.as_slice() else {
        panic!("unexpected caps {caps:?}");
    };
    client.finish(q).unwrap();
    pump(client, server);
    *id
}

fn data(bytes: &[u8]) -> AnyValue {
    AnyValue::Data(bytes.to_vec())
}

#[test]
fn bootstrap_exports_the_bootstrap_object() {
    let (mut client, mut server) = pair();
    let id = bootstrapped(&mut client, &mut server);
    assert_eq!(server.exports().object(id), Some(&BOOT));
    assert_eq!(server.exports().refcount(id), 1);
    assert_eq!(client.imports().count(id), 1);
    assert!(client.questions().is_empty());
    assert!(server.answers().is_empty());
}

#[test]
fn call_return_finish_release() {
    let (mut client, mut server) = pair();
    let boot = bootstrapped(&mut client, &mut server);

    let q = client
        .call(CallTarget::Remote(boot), 0xabc, 3, data(b"args"), &[])
        .unwrap();
    pump(&mut client, &mut server);
    let events = server.take_events();
    let [
        Event::Call {
            answer,
            object,
            interface_id,
            method_id,
            content,
            caps,
        },
    ] = events.as_slice()
    else {
        panic!("unexpected events {events:?}");
    };
    assert_eq!(
        (*object, *interface_id, *method_id, content, caps.len()),
        (BOOT, 0xabc, 3, &data(b"args"), 0)
    );
    server
        .return_results(*answer, data(b"result"), &[Cap::Local(7)])
        .unwrap();
    pump(&mut client, &mut server);
    let events = client.take_events();
    let [
        Event::Returned {
            question,
            outcome: Outcome::Results { content, caps },
        },
    ] = events.as_slice()
    else {
        panic!("unexpected events {events:?}");
    };
    assert_eq!(*question, q);
    assert_eq!(content, &data(b"result"));
    let [Cap::Remote(seven)] = caps.as_slice() else {
        panic!("unexpected caps {caps:?}");
    };
    let seven = *seven;

    client.finish(q).unwrap();
    pump(&mut client, &mut server);
    assert!(client.questions().is_empty());
    assert!(server.answers().is_empty());
    assert_eq!(server.exports().refcount(seven), 1, "result caps stay ours");

    client.release(seven).unwrap();
    client.release(boot).unwrap();
    pump(&mut client, &mut server);
    assert_eq!(
        server.take_events(),
        [
            Event::ExportReleased { object: 7 },
            Event::ExportReleased { object: BOOT },
        ]
    );
    assert!(server.exports().is_empty());
    assert!(client.imports().is_empty());
}

#[test]
fn question_ids_are_reused_after_return_and_finish() {
    let (mut client, mut server) = pair();
    let boot = bootstrapped(&mut client, &mut server);
    for _ in 0..3 {
        let q = client
            .call(CallTarget::Remote(boot), 1, 1, AnyValue::Null, &[])
            .unwrap();
        assert_eq!(q, 0);
        pump(&mut client, &mut server);
        let Event::Call { answer, .. } = server.take_events().remove(0) else {
            panic!("expected a call");
        };
        server.return_results(answer, AnyValue::Null, &[]).unwrap();
        pump(&mut client, &mut server);
        client.finish(q).unwrap();
        pump(&mut client, &mut server);
    }
}

#[test]
fn cancelled_call_returns_canceled_and_leaks_nothing() {
    let (mut client, mut server) = pair();
    let boot = bootstrapped(&mut client, &mut server);
    let q = client
        .call(CallTarget::Remote(boot), 1, 1, AnyValue::Null, &[])
        .unwrap();
    pump(&mut client, &mut server);
    let Event::Call { answer, .. } = server.take_events().remove(0) else {
        panic!("expected a call");
    };
    client.finish(q).unwrap();
    pump(&mut client, &mut server);
    assert_eq!(server.take_events(), [Event::Cancelled { answer }]);
    server
        .return_results(answer, AnyValue::Null, &[Cap::Local(9)])
        .unwrap();
    pump(&mut client, &mut server);
    assert!(client.take_events().is_empty(), "cancelled: no event");
    assert!(client.questions().is_empty());
    assert!(server.answers().is_empty());
    assert_eq!(server.exports().len(), 1, "only the bootstrap export");
}

#[test]
fn params_caps_are_imported_by_the_callee() {
    let (mut client, mut server) = pair();
    let boot = bootstrapped(&mut client, &mut server);
    let q = client
        .call(
            CallTarget::Remote(boot),
            1,
            1,
            AnyValue::Null,
            &[Cap::Local(5), Cap::None],
        )
        .unwrap();
    pump(&mut client, &mut server);
    let Event::Call { answer, caps, .. } = server.take_events().remove(0) else {
        panic!("expected a call");
    };
    let [Cap::Remote(five), Cap::None] = caps.as_slice() else {
        panic!("unexpected caps {caps:?}");
    };
    assert_eq!(client.exports().object(*five), Some(&5));
    // The callee passes our own object back: it travels as receiverHosted.
    server
        .return_results(answer, AnyValue::Null, &[Cap::Remote(*five)])
        .unwrap();
    pump(&mut client, &mut server);
    let Event::Returned {
        outcome: Outcome::Results { caps, .. },
        ..
    } = client.take_events().remove(0)
    else {
        panic!("expected a return");
    };
    assert_eq!(caps, [Cap::Local(5)]);
    client.finish(q).unwrap();
    server.release(*five).unwrap();
    pump(&mut client, &mut server);
    assert!(client.exports().is_empty());
}

#[test]
fn pipelined_call_on_a_returned_bootstrap() {
    let (mut client, mut server) = pair();
    let q = client.bootstrap().unwrap();
    pump(&mut client, &mut server);
    client.take_events();
    let pa = PromisedAnswer {
        question_id: q,
        transform: vec![],
    };
    client
        .call(CallTarget::Promised(pa), 2, 0, AnyValue::Null, &[])
        .unwrap();
    pump(&mut client, &mut server);
    let events = server.take_events();
    assert!(
        matches!(events.as_slice(), [Event::Call { object: BOOT, .. }]),
        "{events:?}"
    );
}

#[test]
fn release_result_caps_from_the_peer_releases_our_exports() {
    let mut conn = Connection::new(Some(BOOT));
    conn.handle(Message::Bootstrap(Bootstrap::default()))
        .unwrap();
    let boot_export = conn.exports().find(&BOOT).unwrap();
    conn.handle(Message::Finish(Finish {
        question_id: 0,
        release_result_caps: true,
        require_early_cancellation_workaround: false,
    }))
    .unwrap();
    assert_eq!(conn.exports().refcount(boot_export), 0);
    assert!(conn.answers().is_empty());
    assert_eq!(conn.take_events(), [Event::ExportReleased { object: BOOT }]);
}

#[test]
fn release_param_caps_from_the_peer_releases_our_exports() {
    let (mut client, mut server) = pair();
    let boot = bootstrapped(&mut client, &mut server);
    let q = client
        .call(
            CallTarget::Remote(boot),
            1,
            1,
            AnyValue::Null,
            &[Cap::Local(5)],
        )
        .unwrap();
    client.take_outgoing();
    let out = client
        .handle(Message::Return(Return {
            answer_id: q,
            release_param_caps: true,
            no_finish_needed: false,
            result: ReturnResult::Results(Payload::default()),
        }))
        .unwrap();
    assert!(out.is_empty());
    assert!(client.exports().is_empty());
    assert!(
        client
            .take_events()
            .contains(&Event::ExportReleased { object: 5 })
    );
}

#[test]
fn protocol_errors_abort_and_close() {
    let mut conn = Connection::new(None);
    let err = conn
        .handle(Message::Return(Return {
            answer_id: 4,
            release_param_caps: false,
            no_finish_needed: false,
            result: ReturnResult::Canceled,
        }))
        .unwrap_err();
    assert_eq!(err, ProtocolError::ReturnForUnknownQuestion { id: 4 });
    let out = conn.take_outgoing();
    let [Message::Abort(e)] = out.as_slice() else {
        panic!("expected an abort, got {out:?}");
    };
    assert!(e.reason.contains("question 4"), "{}", e.reason);
    assert!(conn.is_closed());
    assert_eq!(
        conn.handle(Message::Release(Release {
            id: 0,
            reference_count: 1
        })),
        Err(ProtocolError::Closed)
    );
    assert!(matches!(
        conn.take_events().as_slice(),
        [Event::Closed { by_peer: false, .. }]
    ));
}

#[test]
fn peer_faults_are_detected() {
    let call = |question_id, target| {
        Message::Call(Call {
            question_id,
            target,
            interface_id: 0,
            method_id: 0,
            allow_third_party_tail_call: false,
            no_promise_pipelining: false,
            only_promise_pipeline: false,
            params: Payload::default(),
            send_results_to: SendResultsTo::Caller,
        })
    };
    let mut conn = Connection::new(None);
    assert_eq!(
        conn.handle(call(0, MessageTarget::ImportedCap(3))),
        Err(ProtocolError::NoSuchExport {
            id: 3,
            used_in: "Call.target"
        })
    );

    let mut conn = Connection::new(Some(BOOT));
    conn.handle(Message::Bootstrap(Bootstrap::default()))
        .unwrap();
    assert_eq!(
        conn.handle(Message::Bootstrap(Bootstrap::default())),
        Err(ProtocolError::DuplicateQuestion { id: 0 })
    );

    let mut conn = Connection::new(Some(BOOT));
    conn.handle(Message::Bootstrap(Bootstrap::default()))
        .unwrap();
    let id = conn.exports().find(&BOOT).unwrap();
    assert_eq!(
        conn.handle(Message::Release(Release {
            id,
            reference_count: 2
        })),
        Err(ProtocolError::OverRelease {
            id,
            held: 1,
            released: 2
        })
    );

    let mut conn = Connection::new(None);
    let target = MessageTarget::PromisedAnswer(PromisedAnswer {
        question_id: 9,
        transform: vec![],
    });
    assert_eq!(
        conn.handle(call(0, target)),
        Err(ProtocolError::NoSuchAnswer {
            id: 9,
            used_in: "Call.target"
        })
    );
}

#[test]
fn unsupported_messages_are_echoed_as_unimplemented() {
    let mut conn = Connection::new(None);
    let resolve = Message::Resolve(wire::Resolve {
        promise_id: 1,
        resolution: wire::Resolution::Cap(CapDescriptor::None),
    });
    assert_eq!(
        conn.handle(resolve.clone()),
        Ok(vec![Message::Unimplemented(Box::new(resolve))])
    );
}

#[test]
fn unimplemented_echo_of_our_call_fails_it_without_finish() {
    let (mut client, mut server) = pair();
    let boot = bootstrapped(&mut client, &mut server);
    client
        .call(
            CallTarget::Remote(boot),
            1,
            1,
            AnyValue::Null,
            &[Cap::Local(5)],
        )
        .unwrap();
    let sent = client.take_outgoing().remove(0);
    client
        .handle(Message::Unimplemented(Box::new(sent)))
        .unwrap();
    assert!(client.questions().is_empty());
    assert!(client.exports().is_empty());
    let events = client.take_events();
    assert!(
        matches!(
            events.last(),
            Some(Event::Returned {
                outcome: Outcome::Exception(Exception {
                    kind: ExceptionType::Unimplemented,
                    ..
                }),
                ..
            })
        ),
        "{events:?}"
    );
}

#[test]
fn engine_refusals_release_param_caps_implicitly() {
    let mut conn = Connection::new(Some(BOOT));
    conn.handle(Message::Bootstrap(Bootstrap::default()))
        .unwrap();
    let boot = conn.exports().find(&BOOT).unwrap();
    let out = conn
        .handle(Message::Call(Call {
            question_id: 1,
            target: MessageTarget::ImportedCap(boot),
            interface_id: 0,
            method_id: 0,
            allow_third_party_tail_call: false,
            no_promise_pipelining: false,
            only_promise_pipeline: false,
            params: Payload {
                content: AnyValue::Null,
                cap_table: vec![CapDescriptor::SenderHosted(4)],
            },
            send_results_to: SendResultsTo::Yourself,
        }))
        .unwrap();
    let [Message::Return(r)] = out.as_slice() else {
        panic!("expected a return, got {out:?}");
    };
    assert!(r.release_param_caps);
    assert!(conn.imports().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Random workloads between two connections: no protocol error, and everything drains.

#[derive(Clone, Debug)]
enum Action {
    /// Client calls the bootstrap cap or a held import, passing some local objects.
    Call(u8, Vec<u8>),
    /// Server answers a pending call with some local objects, or an exception.
    Answer(u8, Vec<u8>, bool),
    /// Client finishes a question.
    Finish(u8),
    /// Client releases an import (other than the bootstrap).
    Release(u8),
    /// Server releases an import it received in params.
    ServerRelease(u8),
    /// Deliver one message each way.
    Deliver,
}

fn action() -> impl Strategy<Value = Action> {
    let objs = proptest::collection::vec(0u8..4, 0..3);
    prop_oneof![
        3 => (any::<u8>(), objs.clone()).prop_map(|(t, o)| Action::Call(t, o)),
        3 => (any::<u8>(), objs, any::<bool>()).prop_map(|(n, o, e)| Action::Answer(n, o, e)),
        2 => any::<u8>().prop_map(Action::Finish),
        1 => any::<u8>().prop_map(Action::Release),
        1 => any::<u8>().prop_map(Action::ServerRelease),
        4 => Just(Action::Deliver),
    ]
}

fn pick<T: Clone>(items: &[T], n: u8) -> Option<T> {
    (!items.is_empty()).then(|| items[n as usize % items.len()].clone())
}

struct World {
    client: Connection,
    server: Connection,
    to_server: std::collections::VecDeque<Message>,
    to_client: std::collections::VecDeque<Message>,
    pending: Vec<AnswerId>,
    open_questions: Vec<QuestionId>,
    client_imports: Vec<ImportId>,
    server_imports: Vec<ImportId>,
}

impl World {
    fn flush(&mut self) {
        self.to_server.extend(self.client.take_outgoing());
        self.to_client.extend(self.server.take_outgoing());
    }

    fn deliver(&mut self) {
        if let Some(m) = self.to_server.pop_front() {
            let m = wire::decode(&wire::encode(&m)).unwrap();
            let out = self.server.handle(m).unwrap();
            self.to_client.extend(out);
        }
        if let Some(m) = self.to_client.pop_front() {
            let m = wire::decode(&wire::encode(&m)).unwrap();
            let out = self.client.handle(m).unwrap();
            self.to_server.extend(out);
        }
        self.flush();
        for e in self.server.take_events() {
            match e {
                Event::Call { answer, caps, .. } => {
                    self.pending.push(answer);
                    for c in caps {
                        if let Cap::Remote(id) = c {
                            self.server_imports.push(id);
                        }
                    }
                }
                Event::Cancelled { .. } | Event::ExportReleased { .. } => {}
                other => panic!("server: {other:?}"),
            }
        }
        for e in self.client.take_events() {
            match e {
                Event::Returned { outcome, .. } => {
                    if let Outcome::Results { caps, .. } = outcome {
                        for c in caps {
                            if let Cap::Remote(id) = c {
                                self.client_imports.push(id);
                            }
                        }
                    }
                }
                Event::ExportReleased { .. } => {}
                other => panic!("client: {other:?}"),
            }
        }
    }
}

fn run(actions: &[Action]) {
    let (mut client, mut server) = pair();
    let boot = bootstrapped(&mut client, &mut server);
    let mut w = World {
        client,
        server,
        to_server: Default::default(),
        to_client: Default::default(),
        pending: vec![],
        open_questions: vec![],
        client_imports: vec![],
        server_imports: vec![],
    };
    for a in actions {
        match a {
            Action::Call(t, objs) => {
                let mut targets = vec![boot];
                targets.extend(w.client_imports.iter().copied());
                let target = pick(&targets, *t).unwrap();
                let caps: Vec<Cap> = objs.iter().map(|o| Cap::Local(u64::from(*o))).collect();
                let q = w
                    .client
                    .call(CallTarget::Remote(target), 1, 1, AnyValue::Null, &caps)
                    .unwrap();
                w.open_questions.push(q);
            }
            Action::Answer(n, objs, exc) => {
                if let Some(answer) = pick(&w.pending, *n) {
                    w.pending.retain(|a| *a != answer);
                    if *exc {
                        w.server
                            .return_exception(answer, ProtocolError::Closed.to_exception())
                            .unwrap();
                    } else {
                        let caps: Vec<Cap> = objs
                            .iter()
                            .map(|o| Cap::Local(10 + u64::from(*o)))
                            .collect();
                        w.server
                            .return_results(answer, AnyValue::Null, &caps)
                            .unwrap();
                    }
                }
            }
            Action::Finish(n) => {
                if let Some(q) = pick(&w.open_questions, *n) {
                    w.open_questions.retain(|x| *x != q);
                    w.client.finish(q).unwrap();
                }
            }
            Action::Release(n) => {
                if let Some(id) = pick(&w.client_imports, *n) {
                    w.client_imports.retain(|x| *x != id);
                    w.client.release(id).unwrap();
                }
            }
            Action::ServerRelease(n) => {
                if let Some(id) = pick(&w.server_imports, *n) {
                    w.server_imports.retain(|x| *x != id);
                    w.server.release(id).unwrap();
                }
            }
            Action::Deliver => w.deliver(),
        }
        w.flush();
    }
    // Wind down: answer everything, finish everything, release everything.
    for _ in 0..4 {
        while !w.to_server.is_empty() || !w.to_client.is_empty() {
            w.deliver();
        }
        for answer in std::mem::take(&mut w.pending) {
            w.server
                .return_results(answer, AnyValue::Null, &[])
                .unwrap();
        }
        w.flush();
        while !w.to_server.is_empty() || !w.to_client.is_empty() {
            w.deliver();
        }
        for q in std::mem::take(&mut w.open_questions) {
            w.client.finish(q).unwrap();
        }
        w.client_imports.sort();
        w.client_imports.dedup();
        for id in std::mem::take(&mut w.client_imports) {
            w.client.release(id).unwrap();
        }
        w.server_imports.sort();
        w.server_imports.dedup();
        for id in std::mem::take(&mut w.server_imports) {
            w.server.release(id).unwrap();
        }
        w.flush();
    }
    while !w.to_server.is_empty() || !w.to_client.is_empty() {
        w.deliver();
    }
    w.client.release(boot).unwrap();
    w.flush();
    w.deliver();
    assert!(w.client.questions().is_empty(), "client questions");
    assert!(w.server.answers().is_empty(), "server answers");
    assert!(w.client.imports().is_empty(), "client imports");
    assert!(w.server.imports().is_empty(), "server imports");
    assert!(w.server.exports().is_empty(), "server exports");
    assert!(w.client.exports().is_empty(), "client exports");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_workloads_drain_without_protocol_errors(
        actions in proptest::collection::vec(action(), 0..60),
    ) {
        run(&actions);
    }
}
