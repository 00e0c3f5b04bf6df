//! Interop with pycapnp, i.e. with the C++ implementation of Cap'n Proto RPC, over TCP on
//! 127.0.0.1, in both directions, with our test interface `Probe` (`schema/probe.capnp`):
//!
//! - our vat as the client of a Python `Probe` server: bootstrap, calls pipelined on the
//!   bootstrap and on answers that have not come back yet (all sent before any answer is read),
//!   a capability of ours passed and echoed back as our own object, `getCallSequence` to check
//!   the order in which calls arrived;
//! - our vat serving a `Probe` bootstrap to a Python client that does the same, and must print
//!   PASS; our probes record what reached them, in order.
//!
//! Call order (E-order) is checked through the `Probe` itself: each call carries the caller's
//! (reference, sequence number), and each answer's `n` counts the calls that reached the callee
//! before it. Every message goes through the real codec and framing untouched.
//!
//! Our side is a blocking loop over `std::net::TcpStream`: `captp::stream` frames,
//! `captp::wire` codes, a `captp::Vat` connected to one peer is the engine, and `captp::probe`
//! reads and builds payloads. The peer is `interop/probe_peer.py`, run by the python of the
//! environment that `scripts/pycapnp-env.sh` makes (the first run installs pycapnp from PyPI,
//! ~10-60 s). Every read has a timeout and every child process is killed if it outlives its
//! test, so a hung peer fails the test.
#![allow(clippy::unwrap_used)]

use captp::probe::{
    CALL_METHOD, CallSequence, GET_CALL_SEQUENCE_METHOD, GetCallSequence, PROBE_INTERFACE_ID,
    ProbeCall, ProbeReturn,
};
use captp::stream::{StreamError, read_message, write_message};
use captp::wire::{AnyValue, Message, MessageTarget};
use captp::{AnswerRef, CallId, CapRef, ObjectId, Outcome, Vat, VatConfig, VatEvent, VatId};
use std::collections::BTreeMap;
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

/// Our vat, and the Python peer as our vat names it.
const US: VatId = 0;
const PEER: VatId = 1;

/// A call as one of our `Probe`s saw it arrive.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Arrival {
    Call { ref_id: u64, seq: u64 },
    GetCallSequence { expected: u32 },
}

fn call(ref_id: u64, seq: u64) -> Arrival {
    Arrival::Call { ref_id, seq }
}

/// One end of a connection: our vat, the socket, and the application (our `Probe` objects),
/// which answers every call as soon as it arrives.
struct Side {
    vat: Vat,
    stream: TcpStream,
    /// What each of our probes saw, in order.
    arrivals: BTreeMap<ObjectId, Vec<Arrival>>,
    /// The `Probe.call` (reference, sequence number) whose answer made each fresh probe.
    made_by: BTreeMap<ObjectId, (u64, u64)>,
    next_object: ObjectId,
    /// Every message we sent, in order.
    sent: Vec<Message>,
    /// How many messages we have read.
    received: usize,
    /// The connection is gone (the peer aborted, or the stream ended).
    closed: bool,
}

impl Side {
    fn new(stream: TcpStream, bootstrap: Option<ObjectId>) -> Side {
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        let mut vat = Vat::new(
            US,
            VatConfig {
                third_party_handoff: false,
                bug: None,
            },
        );
        vat.connect(PEER, 0, false);
        if let Some(object) = bootstrap {
            vat.set_bootstrap(object);
        }
        Side {
            vat,
            stream,
            arrivals: BTreeMap::new(),
            made_by: BTreeMap::new(),
            next_object: 1000,
            sent: Vec::new(),
            received: 0,
            closed: false,
        }
    }

    fn fresh_object(&mut self) -> ObjectId {
        self.next_object += 1;
        self.next_object
    }

    /// Sends what the vat has queued and serves the calls that reached our objects (which may
    /// queue more), until there is nothing left of either.
    fn settle(&mut self) {
        loop {
            let outgoing = self.vat.take_outgoing();
            let events = self.vat.take_events();
            if outgoing.is_empty() && events.is_empty() {
                return;
            }
            for (to, msg) in outgoing {
                assert_eq!(
                    to, PEER,
                    "a message for a vat we never connected to: {msg:?}"
                );
                write_message(&mut self.stream, &msg)
                    .unwrap_or_else(|e| panic!("sending {msg:?}: {e}"));
                self.sent.push(msg);
            }
            for event in events {
                match event {
                    VatEvent::Call {
                        call,
                        object,
                        interface_id,
                        method_id,
                        content,
                        caps,
                    } => self.serve(call, object, (interface_id, method_id), &content, caps),
                    // Every call is answered as it arrives, so a cancellation finds none pending.
                    VatEvent::Cancelled { .. } => {}
                    VatEvent::Disconnected {
                        reason, by_peer, ..
                    } => {
                        assert!(
                            by_peer || self.closed,
                            "we closed the connection: {reason:?}"
                        );
                        self.closed = true;
                    }
                }
            }
        }
    }

    /// Answers a call to one of our probes as the schema says: `call` returns how many calls
    /// reached the probe before it, and its `arg` (or a fresh probe when `arg` is null);
    /// `getCallSequence` returns the same count.
    fn serve(
        &mut self,
        call: CallId,
        object: ObjectId,
        (interface_id, method_id): (u64, u16),
        content: &AnyValue,
        caps: Vec<CapRef>,
    ) {
        let seen = self.arrivals.entry(object).or_default();
        let n = seen.len();
        match (interface_id, method_id) {
            (PROBE_INTERFACE_ID, CALL_METHOD) => {
                let params = ProbeCall::from_value(content).unwrap();
                seen.push(Arrival::Call {
                    ref_id: params.ref_id,
                    seq: params.seq,
                });
                let cap = match params.arg {
                    Some(i) => {
                        let arg = caps.get(i as usize).expect("arg indexes the cap table");
                        self.vat.clone_cap(arg)
                    }
                    None => {
                        let fresh = self.fresh_object();
                        self.made_by.insert(fresh, (params.ref_id, params.seq));
                        self.vat.local_cap(fresh)
                    }
                };
                let results = ProbeReturn {
                    n: n as u64,
                    cap: Some(0),
                };
                self.vat
                    .return_results(call, results.to_value(), &[&cap])
                    .unwrap();
                self.vat.release(cap);
            }
            (PROBE_INTERFACE_ID, GET_CALL_SEQUENCE_METHOD) => {
                let GetCallSequence { expected } = GetCallSequence::from_value(content).unwrap();
                seen.push(Arrival::GetCallSequence { expected });
                let results = CallSequence { n: n as u32 };
                self.vat
                    .return_results(call, results.to_value(), &[])
                    .unwrap();
            }
            (PROBE_INTERFACE_ID, other) => {
                let reason = format!("Probe has no method {other}");
                self.vat.return_exception(call, &reason).unwrap();
            }
            (other, _) => {
                let reason = format!("interface {other:#x} is not Probe");
                self.vat.return_exception(call, &reason).unwrap();
            }
        }
        for cap in caps {
            self.vat.release(cap);
        }
    }

    /// Reads one message from the peer and acts on it; false once the stream has ended (the
    /// vat then has the connection closed, as on a lost connection).
    fn pump(&mut self) -> bool {
        let msg = match read_message(&mut self.stream) {
            Ok(msg) => msg,
            Err(StreamError::Closed) => return self.hung_up(),
            Err(StreamError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return self.hung_up();
            }
            Err(e) => panic!("reading from the peer: {e}"),
        };
        self.received += 1;
        if self.closed {
            return true; // after the peer's Abort, drain until it hangs up
        }
        let shown = format!("{msg:?}");
        self.vat
            .handle(PEER, msg)
            .unwrap_or_else(|e| panic!("the peer's {shown} broke the protocol: {e}"));
        self.settle();
        true
    }

    fn hung_up(&mut self) -> bool {
        if !self.closed {
            self.closed = true;
            self.vat.disconnect(PEER, "the stream ended");
            self.settle();
        }
        false
    }

    /// Pumps until `answer` has settled, then finishes it; the results' content and caps.
    fn results(&mut self, answer: AnswerRef) -> (AnyValue, Vec<CapRef>) {
        loop {
            if let Some(outcome) = self.vat.outcome(&answer) {
                self.vat.finish(answer);
                self.settle();
                match outcome {
                    Outcome::Results { content, caps } => return (content, caps),
                    Outcome::Exception(e) => panic!("a call failed: {e:?}"),
                }
            }
            assert!(self.pump(), "the peer hung up before answering {answer:?}");
        }
    }

    /// `Probe.call(ref_id, seq, arg)` on `target`.
    fn call(&mut self, target: &CapRef, ref_id: u64, seq: u64, arg: Option<&CapRef>) -> AnswerRef {
        let params = ProbeCall {
            ref_id,
            seq,
            arg: arg.map(|_| 0),
        };
        let caps: Vec<&CapRef> = arg.into_iter().collect();
        let answer = self.vat.call(
            target,
            PROBE_INTERFACE_ID,
            CALL_METHOD,
            params.to_value(),
            &caps,
        );
        self.settle();
        answer
    }

    /// The `n` and the capability of a `Probe.call` answer.
    fn call_results(&mut self, answer: AnswerRef) -> (u64, CapRef) {
        let (content, caps) = self.results(answer);
        let r = ProbeReturn::from_value(&content).unwrap();
        let index = r.cap.expect("Probe.call returned a null cap") as usize;
        let mut cap = None;
        for (i, c) in caps.into_iter().enumerate() {
            if i == index {
                cap = Some(c);
            } else {
                self.vat.release(c);
            }
        }
        (r.n, cap.expect("the cap index is inside the cap table"))
    }

    /// `Probe.getCallSequence(expected)` on `target`; its `n`.
    fn call_sequence(&mut self, target: &CapRef, expected: u32) -> u32 {
        let answer = self.vat.call(
            target,
            PROBE_INTERFACE_ID,
            GET_CALL_SEQUENCE_METHOD,
            GetCallSequence { expected }.to_value(),
            &[],
        );
        self.settle();
        let (content, caps) = self.results(answer);
        for c in caps {
            self.vat.release(c);
        }
        CallSequence::from_value(&content).unwrap().n
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
    let boot_q = us.vat.bootstrap(PEER);
    let boot_p = us.vat.pipeline(&boot_q, &[]);
    let a = us.call(&boot_p, 1, 0, None);
    let b = us.call(&boot_p, 1, 1, None);
    let a_p = us.vat.pipeline(&a, &[0]);
    let c = us.call(&a_p, 2, 0, None);
    let d = us.call(&a_p, 2, 1, None);
    let c_p = us.vat.pipeline(&c, &[0]);
    let e = us.call(&c_p, 3, 0, None);
    assert_eq!(us.received, 0);
    let kinds: Vec<&str> = us.sent.iter().map(Message::kind).collect();
    assert_eq!(kinds, ["bootstrap", "call", "call", "call", "call", "call"]);
    for msg in &us.sent[1..] {
        assert!(
            matches!(msg, Message::Call(c) if matches!(c.target, MessageTarget::PromisedAnswer(_))),
            "not pipelined on an unreturned answer: {msg:?}"
        );
    }

    let (content, caps) = us.results(boot_q);
    let index = content
        .cap_index_at(&[])
        .expect("bootstrap content is a capability");
    assert_eq!((index, caps.len()), (0, 1), "the bootstrap cap table");
    let boot = caps.into_iter().next().unwrap();
    let (n_a, cap_a) = us.call_results(a);
    let (n_b, cap_b) = us.call_results(b);
    let (n_c, cap_c) = us.call_results(c);
    let (n_d, cap_d) = us.call_results(d);
    let (n_e, cap_e) = us.call_results(e);
    assert_eq!((n_a, n_b), (0, 1), "calls on the bootstrap promise");
    assert_eq!(
        (n_c, n_d),
        (0, 1),
        "calls pipelined on an unreturned answer"
    );
    assert_eq!(n_e, 0, "a call pipelined two levels deep");
    assert_eq!(us.call_sequence(&boot, 2), 2);
    assert_eq!(us.call_sequence(&cap_a, 2), 2);
    assert_eq!(us.call_sequence(&cap_c, 1), 1);

    // A capability of ours as `arg`, echoed back as `cap`: it comes back as our own object,
    // and a call on it stays here.
    let ours_object = us.fresh_object();
    let ours = us.vat.local_cap(ours_object);
    let q = us.call(&boot, 1, 2, Some(&ours));
    let (n, echoed) = us.call_results(q);
    assert_eq!(n, 3);
    assert_eq!(echoed, ours, "the echoed capability is our own object");
    let sent = us.sent.len();
    let q = us.call(&echoed, 4, 0, None);
    let (n, fresh) = us.call_results(q);
    assert_eq!(n, 0);
    assert_eq!(
        us.sent.len(),
        sent,
        "a call on our own object went to the peer"
    );
    assert_eq!(us.arrivals.get(&ours_object), Some(&vec![call(4, 0)]));

    // A burst on the (now resolved) bootstrap capability, all sent before any answer is read.
    let burst: Vec<AnswerRef> = (0..8).map(|i| us.call(&boot, 5, i, None)).collect();
    let ns: Vec<u64> = burst
        .into_iter()
        .map(|q| {
            let (n, cap) = us.call_results(q);
            us.vat.release(cap);
            n
        })
        .collect();
    assert_eq!(ns, (4..12).collect::<Vec<u64>>());
    assert_eq!(us.call_sequence(&boot, 12), 12);

    // Everything given back: no question is left open and no import is held.
    for cap in [
        boot_p, a_p, c_p, boot, cap_a, cap_b, cap_c, cap_d, cap_e, ours, echoed, fresh,
    ] {
        us.vat.release(cap);
    }
    us.settle();
    let sizes = us.vat.table_sizes(PEER).unwrap();
    assert_eq!((sizes.questions, sizes.imports), (0, 0), "{sizes:?}");

    us.stream.shutdown(Shutdown::Both).unwrap();
    let (status, output) = peer.finish();
    let _ = std::fs::remove_dir_all(&dir);
    println!("{output}");
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
    println!("{output}");
    assert!(
        status.is_some_and(|s| s.success()) && output.contains("PASS all"),
        "the Python client failed ({status:?}):\n{output}"
    );
    // What our bootstrap object saw, in order.
    let mut expected = vec![
        call(1, 0),
        call(1, 1),
        Arrival::GetCallSequence { expected: 2 },
        call(1, 2),
    ];
    expected.extend((0..8).map(|i| call(5, i)));
    expected.push(Arrival::GetCallSequence { expected: 12 });
    assert_eq!(us.arrivals.get(&BOOT), Some(&expected));
    // What the probes returned by calls reached through pipelined calls saw.
    let made_by = |call: (u64, u64)| {
        let object = us
            .made_by
            .iter()
            .find(|(_, c)| **c == call)
            .map(|(o, _)| *o);
        let object = object.unwrap_or_else(|| panic!("no probe was made by call {call:?}"));
        us.arrivals.get(&object).cloned().unwrap_or_default()
    };
    assert_eq!(
        made_by((1, 0)),
        [
            call(2, 0),
            call(2, 1),
            Arrival::GetCallSequence { expected: 2 }
        ]
    );
    assert_eq!(
        made_by((2, 0)),
        [call(3, 0), Arrival::GetCallSequence { expected: 1 }]
    );
    // The connection is gone and took everything with it: our vat holds nothing.
    assert!(!us.vat.is_connected(PEER));
    assert_eq!(us.vat.live_counts(), (0, 0, 0));
}
