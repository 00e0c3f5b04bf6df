//! The liveness and crash oracle every run gets from the harness, over the kernel's outside
//! view: no waiter parked while its condition holds at quiescence (lost wake-up), no actor
//! blocked forever (deadlock), no actor spinning past its progress budget, no panic, no run
//! cut off by a step or time limit.
//!
//! Each violation names its kind, its actor and (for a lost wake-up) the wait, and points at
//! the trace line where it could first be told: for a lost wake-up the step at which its wake
//! condition became true for good, for a panic the panic, otherwise the end of the run.

use crate::Violation;
use simkit::{EndReason, RunOutcome};

pub fn check(outcome: &RunOutcome) -> Vec<Violation> {
    let mut out = Vec::new();
    for w in &outcome.lost_wakeups {
        out.push(
            Violation::new(
                "liveness",
                format!(
                    "lost wake-up: {} parked on '{}' while its condition holds",
                    w.actor, w.label
                ),
            )
            .kind("lost-wakeup")
            .actor(&w.actor)
            .object(&w.label)
            .at(w.since),
        );
    }
    let end = outcome.end_at;
    match &outcome.end {
        EndReason::NoProgress { actor, steps } => out.push(
            Violation::new(
                "liveness",
                format!("no progress: {actor} ran {steps} steps without progress"),
            )
            .kind("no-progress")
            .actor(actor)
            .at(end),
        ),
        EndReason::StepLimit => out.push(
            Violation::new(
                "liveness",
                format!("step limit reached after {} steps", outcome.steps),
            )
            .kind("step-limit")
            .at(end),
        ),
        EndReason::TimeLimit => out.push(
            Violation::new(
                "liveness",
                format!("time limit reached at t={}", outcome.now_ns),
            )
            .kind("time-limit")
            .at(end),
        ),
        EndReason::Quiescent if !outcome.unfinished.is_empty() => out.push(
            Violation::new(
                "liveness",
                format!(
                    "deadlock: quiescent with {} blocked",
                    outcome.unfinished.join(", ")
                ),
            )
            .kind("deadlock")
            .actor(outcome.unfinished.join(","))
            .at(end),
        ),
        _ => {}
    }
    for p in &outcome.panics {
        out.push(
            Violation::new("no-panic", format!("{} panicked: {}", p.actor, p.message))
                .kind("panic")
                .actor(&p.actor)
                .at(p.at),
        );
    }
    out
}
