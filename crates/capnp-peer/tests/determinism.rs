//! The same driver calls give the same bytes, in separate processes too.
//!
//! capnp-rpc keeps some tables in `std` `HashMap`s seeded from the OS per process (and per map),
//! iterated when a connection is torn down. A test that replays a script twice in one process
//! sees two seeds already, but the claim that matters is across processes, so the parent test
//! runs this test binary again as child processes and compares what they print.

mod common;

use std::fmt::Write;

use capnp_peer::{AnswerHandle, CapnpRpcVat};

/// How a scripted run ends.
#[derive(Clone, Copy, Debug)]
enum Ending {
    /// Both links cut after this many messages were carried.
    CutAfter(usize),
    /// The client asks capnp-rpc to shut down after this many messages were carried.
    ShutdownAfter(usize),
    /// The server receives a malformed message after this many messages were carried.
    GarbageAfter(usize),
    /// No ending: run to quiescence.
    Quiet,
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// One scripted run: many caps, pipelined calls, promises passed both ways, then the ending.
/// Returns (observable transcript, diagnostic completion orders).
fn run(ending: Ending) -> (String, String) {
    let mut client = CapnpRpcVat::new(true);
    let mut server = CapnpRpcVat::new(true);
    let mut answers: Vec<(char, AnswerHandle)> = Vec::new();

    let boot = client.bootstrap();
    let back = server.bootstrap();
    let mine = client.local_probe();
    // A local call whose pipelined cap is an unresolved local promise: passing it exports a
    // senderPromise.
    let local = client.call(mine, 100, 0, None).expect("call");
    let promise = client.pipeline_cap(local).expect("pipeline");
    answers.push(('c', local));
    for i in 0..12u64 {
        let arg = match i % 3 {
            0 => None,
            1 => Some(mine),
            _ => Some(promise),
        };
        let a = client.call(boot, 1, i, arg).expect("call");
        let p = client.pipeline_cap(a).expect("pipeline");
        answers.push(('c', a));
        for j in 0..3u64 {
            let b = client.call(p, 10 + i, j, None).expect("call");
            answers.push(('c', b));
        }
        let s = server.call(back, 2, i, None).expect("call");
        answers.push(('s', s));
    }

    let mut out = String::new();
    let mut carried = 0usize;
    let mut ended = false;
    for round in 0..200 {
        client.run_until_stalled();
        server.run_until_stalled();
        let from_c = client.take_outgoing();
        let from_s = server.take_outgoing();
        if from_c.is_empty() && from_s.is_empty() && (ended || matches!(ending, Ending::Quiet)) {
            let _ = writeln!(out, "quiet after round {round}");
            break;
        }
        let batch = from_c
            .into_iter()
            .map(|m| ('C', m))
            .chain(from_s.into_iter().map(|m| ('S', m)));
        for (who, m) in batch {
            if !ended {
                match ending {
                    Ending::CutAfter(k) if carried >= k => {
                        client.disconnect();
                        server.disconnect();
                        ended = true;
                    }
                    Ending::ShutdownAfter(k) if carried >= k => {
                        client.shutdown();
                        ended = true;
                    }
                    Ending::GarbageAfter(k) if carried >= k => {
                        server.deliver(vec![0, 0, 0, 0, 2, 0, 0, 0, 0xde, 0xad]);
                        ended = true;
                    }
                    _ => {}
                }
            }
            let _ = writeln!(out, "{who}> {}", hex(&m));
            carried += 1;
            if who == 'C' {
                server.deliver(m);
            } else {
                client.deliver(m);
            }
        }
    }
    let mut diag = String::new();
    for (who, a) in &answers {
        let vat = if *who == 'c' {
            &mut client
        } else {
            &mut server
        };
        let _ = writeln!(out, "{who} {a:?} = {:?}", vat.poll_answer(*a));
    }
    for (name, vat) in [("client", &client), ("server", &server)] {
        let _ = writeln!(out, "{name} arrivals {:?}", vat.arrivals());
        let _ = writeln!(out, "{name} closed {:?}", vat.closed());
        let _ = writeln!(out, "{name} system {:?}", vat.system_result());
        let _ = writeln!(out, "{name} dropped {}", vat.dropped_messages());
        let _ = writeln!(out, "{name} caps {:?}", vat.cap_handles());
        let _ = writeln!(diag, "{name} {:?}", vat.diagnostic_completion_order());
    }
    (out, diag)
}

fn endings() -> Vec<Ending> {
    let mut e = vec![Ending::Quiet];
    for k in [1, 10, 30, 62, 64, 80, 100, 130, 160, 200] {
        e.push(Ending::CutAfter(k));
        e.push(Ending::ShutdownAfter(k));
        e.push(Ending::GarbageAfter(k));
    }
    e
}

/// Everything observable from all endings, and the diagnostics.
fn all_runs() -> (String, String) {
    let mut out = String::new();
    let mut diag = String::new();
    for ending in endings() {
        let (o, d) = run(ending);
        let _ = writeln!(out, "== {ending:?}\n{o}");
        let _ = writeln!(diag, "== {ending:?}\n{d}");
    }
    (out, diag)
}

const CHILD: &str = "CAPNP_PEER_TRANSCRIPT_CHILD";

/// Prints the transcript when run as a child of `transcripts_match_across_processes`.
#[test]
fn child_prints_transcript() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let (out, diag) = all_runs();
    println!("@@OUT@@\n{out}@@DIAG@@\n{diag}@@END@@");
}

fn between<'a>(s: &'a str, from: &str, to: &str) -> &'a str {
    let start = s.find(from).map(|i| i + from.len()).expect("marker");
    let end = s[start..].find(to).map(|i| start + i).expect("marker");
    &s[start..end]
}

fn first_difference(a: &str, b: &str) -> String {
    for (i, (x, y)) in a.lines().zip(b.lines()).enumerate() {
        if x != y {
            return format!("line {i}:\n  {x}\n  {y}");
        }
    }
    format!("lengths {} and {}", a.lines().count(), b.lines().count())
}

#[test]
fn transcripts_match_within_a_process() {
    let (a, _) = all_runs();
    let (b, _) = all_runs();
    assert!(a == b, "{}", first_difference(&a, &b));
    assert!(a.lines().filter(|l| l.starts_with("C> ")).count() > 100);
}

#[test]
fn transcripts_match_across_processes() {
    let exe = std::env::current_exe().expect("the test binary");
    let mut outs = Vec::new();
    let mut diags = Vec::new();
    for _ in 0..4 {
        let output = std::process::Command::new(&exe)
            .args([
                "--exact",
                "child_prints_transcript",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .output()
            .expect("runs the test binary");
        assert!(output.status.success(), "child failed: {output:?}");
        let stdout = String::from_utf8(output.stdout).expect("utf-8");
        outs.push(between(&stdout, "@@OUT@@\n", "@@DIAG@@").to_string());
        diags.push(between(&stdout, "@@DIAG@@\n", "@@END@@").to_string());
    }
    let (here, here_diag) = all_runs();
    for out in &outs {
        assert!(*out == here, "{}", first_difference(out, &here));
    }
    let diag_same = diags.iter().all(|d| *d == here_diag);
    println!(
        "diagnostic completion order {} across processes",
        if diag_same { "identical" } else { "DIFFERS" }
    );
    if !diag_same {
        for d in &diags {
            println!("{}", first_difference(d, &here_diag));
        }
    }
}
