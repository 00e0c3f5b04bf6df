//! Helpers shared by the integration tests: wiring two vats to each other.

#![allow(dead_code)]

use capnp_peer::CapnpRpcVat;

/// Which vat sent a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    A,
    B,
}

/// Runs both vats and carries every message across, in send order, until neither has anything
/// more to say. Returns the messages carried, in the order they were taken.
pub fn pump(a: &mut CapnpRpcVat, b: &mut CapnpRpcVat) -> Vec<(Dir, Vec<u8>)> {
    let mut log = Vec::new();
    for _ in 0..10_000 {
        a.run_until_stalled();
        b.run_until_stalled();
        let from_a = a.take_outgoing();
        let from_b = b.take_outgoing();
        if from_a.is_empty() && from_b.is_empty() {
            return log;
        }
        for m in from_a {
            log.push((Dir::A, m.clone()));
            b.deliver(m);
        }
        for m in from_b {
            log.push((Dir::B, m.clone()));
            a.deliver(m);
        }
    }
    panic!("the vats kept talking for 10000 rounds");
}

/// `pump`, keeping only the message kinds, as `"A Call"` lines.
pub fn pump_kinds(a: &mut CapnpRpcVat, b: &mut CapnpRpcVat) -> Vec<String> {
    pump(a, b)
        .into_iter()
        .map(|(from, m)| {
            let d = capnp_peer::describe_message(&m).expect("our own messages parse");
            format!("{from:?} {d}")
        })
        .collect()
}
