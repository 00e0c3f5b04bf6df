//! Interop with pycapnp, i.e. with the C++ implementation of Cap'n Proto RPC, over TCP on
//! 127.0.0.1, in both directions, with our test interface `Probe` (`schema/probe.capnp`):
//!
//! - our engine as the client of a Python `Probe` server: bootstrap, calls pipelined on the
//!   bootstrap and on answers that have not come back yet, a capability of ours passed and
//!   echoed, `getCallSequence` to check the order in which calls arrived;
//! - our engine serving a `Probe` bootstrap to a Python client that does the same, and must
//!   print PASS.
//!
//! Our side is a blocking loop over `std::net::TcpStream`: `captp::stream` frames, `captp::wire`
//! codes, `captp::Connection` keeps the tables, and `captp::probe` reads and builds payloads.
//! The peer is `interop/probe_peer.py`, run by the python of the environment that
//! `scripts/pycapnp-env.sh` makes (the first run installs pycapnp from PyPI, ~10-60 s). Every
//! read has a timeout and every child process is killed if it outlives its test, so a hung peer
//! fails the test.
//!
//! One shim stands between `Connection` and the wire: `Connection` answers `Bootstrap` with
//! null content and the capability as `capTable[0]`, but a real peer reads the bootstrap
//! capability from the content pointer (C++ turns null content into a null capability). So the
//! server side here rewrites that `Return`'s content to `Capability(0)` before sending it.
#![allow(clippy::unwrap_used)]

use captp::probe::{
    CALL_METHOD, CallSequence, GET_CALL_SEQUENCE_METHOD, GetCallSequence, PROBE_INTERFACE_ID,
    ProbeCall, ProbeReturn,
};
use captp::stream::{StreamError, read_message, write_message};
use captp::wire::{
    AnyValue, Exception, ExceptionType, Message, PipelineOp, PromisedAnswer, QuestionId,
    ReturnResult,
};
use captp::{CallTarget, Cap, Connection, Event, ObjectId, Outcome};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long any one step may take before the test gives up.
const TIMEOUT: Duration = Duration::from_secs(30);

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The python that has pycapnp, made (once per test process) by `scripts/pycapnp-env.sh`.
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let script = crate_dir().join("../../scripts/pycapnp-env.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{} failed ({}):\n{stdout}",
            script.display(),
            out.status
        );
        let path = stdout.lines().last().unwrap_or_default().trim();
        assert!(
            Path::new(path).is_file(),
            "{} printed no python path:\n{stdout}",
            script.display()
        );
        PathBuf::from(path)
    })
}

/// The Python peer, its output collected by threads so that a full pipe never blocks it.
struct Peer {
    child: Child,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
}

fn collect(pipe: Option<impl Read + Send + 'static>) -> Option<JoinHandle<String>> {
    pipe.map(|mut p| {
        thread::spawn(move || {
            let mut s = String::new();
            let _ = p.read_to_string(&mut s);
            s
        })
    })
}

impl Peer {
    fn spawn(args: &[&str]) -> Peer {
        let mut child = Command::new(python())
            .arg(crate_dir().join("interop/probe_peer.py"))
            .args(args)
            .env("PROBE_PEER_TIMEOUT", TIMEOUT.as_secs().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = collect(child.stdout.take());
        let stderr = collect(child.stderr.take());
        Peer {
            child,
            stdout,
            stderr,
        }
    }

    fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits for the peer to exit (killing it after [`TIMEOUT`]); its status and output.
    fn finish(mut self) -> (Option<ExitStatus>, String) {
        let deadline = Instant::now() + TIMEOUT; // determinism-ok: real sockets against an outside Python process, never inside a simulation
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)), // determinism-ok: real sockets against an outside Python process, never inside a simulation
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
            }
        };
        let out = self.stdout.take().map(|h| h.join().unwrap_or_default());
        let err = self.stderr.take().map(|h| h.join().unwrap_or_default());
        let output = format!(
            "--- peer stdout\n{}--- peer stderr\n{}",
            out.unwrap_or_default(),
            err.unwrap_or_default()
        );
        (status, output)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // Only this test's own child, by its handle; a no-op once it has exited.
        if !self.has_exited() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Our side.

/// A call as a `Probe` saw it arrive.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Arrival {
    Call { ref_id: u64, seq: u64 },
    GetCallSequence { expected: u32 },
}

/// Our `Probe` objects: each records its arrivals and answers as the schema says.
#[derive(Default)]
struct Probes {
    arrivals: BTreeMap<ObjectId, Vec<Arrival>>,
    next: ObjectId,
}

impl Probes {
    fn fresh(&mut self) -> ObjectId {
        self.next += 1;
        1000 + self.next
    }

    fn serve(
        &mut self,
        conn: &mut Connection,
        answer: QuestionId,
        object: ObjectId,
        (interface_id, method_id): (u64, u16),
        content: &AnyValue,
        caps: &[Cap],
    ) {
        let unimplemented = |reason: String| Exception {
            reason,
            kind: ExceptionType::Unimplemented,
            trace: String::new(),
        };
        if interface_id != PROBE_INTERFACE_ID {
            let e = unimplemented(format!("interface {interface_id:#x} is not Probe"));
            return conn.return_exception(answer, e).unwrap();
        }
        let n = self.arrivals.get(&object).map_or(0, Vec::len);
        match method_id {
            CALL_METHOD => {
                let call = ProbeCall::from_value(content).unwrap();
                self.arrivals
                    .entry(object)
                    .or_default()
                    .push(Arrival::Call {
                        ref_id: call.ref_id,
                        seq: call.seq,
                    });
                let cap = match call.arg {
                    Some(i) => caps[i as usize].clone(),
                    None => Cap::Local(self.fresh()),
                };
                let results = ProbeReturn {
                    n: n as u64,
                    cap: Some(0),
                };
                conn.return_results(answer, results.to_value(), &[cap])
                    .unwrap();
            }
            GET_CALL_SEQUENCE_METHOD => {
                let GetCallSequence { expected } = GetCallSequence::from_value(content).unwrap();
                self.arrivals
                    .entry(object)
                    .or_default()
                    .push(Arrival::GetCallSequence { expected });
                let results = CallSequence { n: n as u32 };
                conn.return_results(answer, results.to_value(), &[])
                    .unwrap();
            }
            other => {
                let e = unimplemented(format!("Probe has no method {other}"));
                conn.return_exception(answer, e).unwrap();
            }
        }
    }
}

/// One end of a connection: the engine, the socket, and our probes.
struct Side {
    conn: Connection,
    stream: TcpStream,
    probes: Probes,
    /// Answers to the peer's `Bootstrap`s whose `Return` we have not sent yet (see the shim in
    /// the module doc).
    bootstrap_answers: BTreeSet<QuestionId>,
    /// How our questions ended, as they come in.
    outcomes: BTreeMap<QuestionId, Outcome>,
    closed: bool,
}

impl Side {
    fn new(stream: TcpStream, bootstrap: Option<ObjectId>) -> Side {
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Side {
            conn: Connection::new(bootstrap),
            stream,
            probes: Probes::default(),
            bootstrap_answers: BTreeSet::new(),
            outcomes: BTreeMap::new(),
            closed: false,
        }
    }

    fn send(&mut self, msgs: Vec<Message>) {
        for mut msg in msgs {
            if let Message::Return(r) = &mut msg
                && self.bootstrap_answers.remove(&r.answer_id)
                && let ReturnResult::Results(p) = &mut r.result
                && p.content == AnyValue::Null
                && p.cap_table.len() == 1
            {
                p.content = AnyValue::Capability(0);
            }
            write_message(&mut self.stream, &msg).unwrap();
        }
    }

    fn flush(&mut self) {
        let out = self.conn.take_outgoing();
        self.send(out);
    }

    /// Reads one message from the peer and acts on it; false once the stream has ended.
    fn pump(&mut self) -> bool {
        let msg = match read_message(&mut self.stream) {
            Ok(msg) => msg,
            Err(StreamError::Closed) => return false,
            Err(StreamError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return false;
            }
            Err(e) => panic!("reading from the peer: {e}"),
        };
        if self.closed {
            return true; // after an Abort, drain until the peer hangs up
        }
        if let Message::Bootstrap(b) = &msg {
            self.bootstrap_answers.insert(b.question_id);
        }
        let replies = self
            .conn
            .handle(msg.clone())
            .unwrap_or_else(|e| panic!("the peer's {msg:?} broke the protocol: {e}"));
        self.send(replies);
        for event in self.conn.take_events() {
            match event {
                Event::Call {
                    answer,
                    object,
                    interface_id,
                    method_id,
                    content,
                    caps,
                } => self.probes.serve(
                    &mut self.conn,
                    answer,
                    object,
                    (interface_id, method_id),
                    &content,
                    &caps,
                ),
                Event::Returned { question, outcome } => {
                    self.outcomes.insert(question, outcome);
                }
                Event::Closed { reason, by_peer } => {
                    assert!(by_peer, "we closed the connection: {reason:?}");
                    self.closed = true;
                }
                Event::Cancelled { .. } | Event::ExportReleased { .. } => {}
            }
        }
        self.flush();
        true
    }

    /// Pumps until `question` has returned; its content and caps.
    fn results(&mut self, question: QuestionId) -> (AnyValue, Vec<Cap>) {
        while !self.outcomes.contains_key(&question) {
            assert!(self.pump(), "the peer hung up before answering {question}");
        }
        match self.outcomes.remove(&question) {
            Some(Outcome::Results { content, caps }) => {
                // C++ sets `noFinishNeeded` on results without capabilities; the question is
                // then already retired.
                if self.conn.questions().get(question).is_some() {
                    self.conn.finish(question).unwrap();
                    self.flush();
                }
                (content, caps)
            }
            other => panic!("question {question} ended with {other:?}"),
        }
    }

    fn call(&mut self, target: CallTarget, call: ProbeCall, caps: &[Cap]) -> QuestionId {
        let q = self
            .conn
            .call(
                target,
                PROBE_INTERFACE_ID,
                CALL_METHOD,
                call.to_value(),
                caps,
            )
            .unwrap();
        self.flush();
        q
    }

    /// The `n` and the capability of a `Probe.call` answer.
    fn call_results(&mut self, question: QuestionId) -> (u64, Cap) {
        let (content, caps) = self.results(question);
        let r = ProbeReturn::from_value(&content).unwrap();
        let index = r.cap.expect("Probe.call returned a null cap");
        (r.n, caps[index as usize].clone())
    }

    fn call_sequence(&mut self, target: Cap, expected: u32) -> u32 {
        let Cap::Remote(id) = target else {
            panic!("not a remote capability: {target:?}")
        };
        let q = self
            .conn
            .call(
                CallTarget::Remote(id),
                PROBE_INTERFACE_ID,
                GET_CALL_SEQUENCE_METHOD,
                GetCallSequence { expected }.to_value(),
                &[],
            )
            .unwrap();
        self.flush();
        let (content, _) = self.results(q);
        CallSequence::from_value(&content).unwrap().n
    }
}

fn probe_call(ref_id: u64, seq: u64) -> ProbeCall {
    ProbeCall {
        ref_id,
        seq,
        arg: None,
    }
}

fn pipelined(question: QuestionId, path: &[u16]) -> CallTarget {
    CallTarget::Promised(PromisedAnswer {
        question_id: question,
        transform: path
            .iter()
            .map(|i| PipelineOp::GetPointerField(*i))
            .collect(),
    })
}

fn remote(cap: &Cap) -> CallTarget {
    match cap {
        Cap::Remote(id) => CallTarget::Remote(*id),
        other => panic!("not a remote capability: {other:?}"),
    }
}

/// Waits for the Python server to write its port.
fn server_port(peer: &mut Peer, port_file: &Path) -> u16 {
    let deadline = Instant::now() + TIMEOUT; // determinism-ok: real sockets against an outside Python process, never inside a simulation
    loop {
        if let Ok(text) = std::fs::read_to_string(port_file)
            && let Ok(port) = text.trim().parse()
        {
            return port;
        }
        assert!(
            !peer.has_exited() && Instant::now() < deadline, // determinism-ok: real sockets against an outside Python process, never inside a simulation
            "the Python server did not start listening"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn our_client_against_a_pycapnp_server() {
    let dir = std::env::temp_dir().join(format!("captp-interop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port_file = dir.join("server.port");
    let _ = std::fs::remove_file(&port_file);
    let mut peer = Peer::spawn(&["server", port_file.to_str().unwrap()]);
    let port = server_port(&mut peer, &port_file);
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut us = Side::new(stream, None);

    // Everything up to here goes out before any answer is read: calls on the bootstrap promise,
    // calls on the `cap` of an answer that has not returned, and one two levels down.
    let boot_q = us.conn.bootstrap().unwrap();
    us.flush();
    let a = us.call(pipelined(boot_q, &[]), probe_call(1, 0), &[]);
    let b = us.call(pipelined(boot_q, &[]), probe_call(1, 1), &[]);
    let c = us.call(pipelined(a, &[0]), probe_call(2, 0), &[]);
    let d = us.call(pipelined(a, &[0]), probe_call(2, 1), &[]);
    let e = us.call(pipelined(c, &[0]), probe_call(3, 0), &[]);

    let (content, caps) = us.results(boot_q);
    let index = content
        .cap_index_at(&[])
        .expect("bootstrap content is a capability");
    let boot = caps[index as usize].clone();
    assert!(matches!(boot, Cap::Remote(_)), "{boot:?}");
    let (n_a, cap_a) = us.call_results(a);
    let (n_b, _) = us.call_results(b);
    let (n_c, cap_c) = us.call_results(c);
    let (n_d, _) = us.call_results(d);
    let (n_e, _) = us.call_results(e);
    assert_eq!((n_a, n_b), (0, 1), "calls on the bootstrap promise");
    assert_eq!(
        (n_c, n_d),
        (0, 1),
        "calls pipelined on an unreturned answer"
    );
    assert_eq!(n_e, 0, "a call pipelined two levels deep");
    assert_eq!(us.call_sequence(boot.clone(), 2), 2);
    assert_eq!(us.call_sequence(cap_a, 2), 2);
    assert_eq!(us.call_sequence(cap_c, 1), 1);

    // A capability of ours as `arg`, echoed back as `cap`: it comes back as our own object.
    let ours = us.probes.fresh();
    let echo = ProbeCall {
        ref_id: 1,
        seq: 2,
        arg: Some(0),
    };
    let q = us.call(remote(&boot), echo, &[Cap::Local(ours)]);
    let (n, cap) = us.call_results(q);
    assert_eq!(n, 3);
    assert_eq!(cap, Cap::Local(ours));

    // A burst on the (now resolved) bootstrap capability, all sent before any answer is read.
    let burst: Vec<QuestionId> = (0..8)
        .map(|i| us.call(remote(&boot), probe_call(5, i), &[]))
        .collect();
    let ns: Vec<u64> = burst.into_iter().map(|q| us.call_results(q).0).collect();
    assert_eq!(ns, (4..12).collect::<Vec<u64>>());
    assert_eq!(us.call_sequence(boot, 12), 12);

    us.stream.shutdown(Shutdown::Both).unwrap();
    let (status, output) = peer.finish();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        status.is_some_and(|s| s.success()) && output.contains("ORDER OK"),
        "the Python server failed ({status:?}):\n{output}"
    );
    assert!(
        output.contains(
            "probe bootstrap: [('call', 1, 0), ('call', 1, 1), ('getCallSequence', 2), ('call', 1, 2)"
        ),
        "unexpected arrival order at the bootstrap:\n{output}"
    );
}

#[test]
fn a_pycapnp_client_against_our_server() {
    const BOOT: ObjectId = 1;
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut peer = Peer::spawn(&["client", &port.to_string()]);

    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + TIMEOUT; // determinism-ok: real sockets against an outside Python process, never inside a simulation
    let stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let late = Instant::now() > deadline; // determinism-ok: real sockets, outside any simulation
                if peer.has_exited() || late {
                    let (status, output) = peer.finish();
                    panic!("the Python client never connected ({status:?}):\n{output}");
                }
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    let mut us = Side::new(stream, Some(BOOT));
    while us.pump() {}

    let (status, output) = peer.finish();
    assert!(
        status.is_some_and(|s| s.success()) && output.contains("PASS all"),
        "the Python client failed ({status:?}):\n{output}"
    );
    // What our bootstrap object saw, in order.
    let call = |ref_id, seq| Arrival::Call { ref_id, seq };
    let mut expected = vec![
        call(1, 0),
        call(1, 1),
        Arrival::GetCallSequence { expected: 2 },
        call(1, 2),
    ];
    expected.extend((0..8).map(|i| call(5, i)));
    expected.push(Arrival::GetCallSequence { expected: 12 });
    assert_eq!(us.probes.arrivals.get(&BOOT), Some(&expected));
}
