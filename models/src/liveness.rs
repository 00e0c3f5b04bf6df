//! Liveness and crash oracle over the kernel's outside view of a run: no waiter parked while its
//! condition holds at quiescence (lost wake-up), no actor blocked forever (deadlock), no actor
//! spinning past its progress budget, no panic, no run cut off by a step or time limit.

use crate::Violation;
use simkit::RunOutcome;

pub fn check(outcome: &RunOutcome) -> Vec<Violation> {
    let mut out: Vec<Violation> = outcome
        .liveness_failures()
        .into_iter()
        .map(|m| Violation::new("liveness", m))
        .collect();
    for (actor, msg) in &outcome.panics {
        out.push(Violation::new(
            "no-panic",
            format!("{actor} panicked: {msg}"),
        ));
    }
    out
}
