//! Traces of hardware runs, in the simulation's format (`t=<ns> <actor> <event> <details>`, real
//! nanoseconds since the run started), with the task being polled as the actor, and the hash the
//! report prints.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

thread_local! {
    /// The task being polled (the simulation's kernel knows its actor; here the task says).
    static ACTOR: RefCell<String> = RefCell::new("host".into());
}

/// A task that names itself while it is polled.
struct Named<F> {
    name: String,
    fut: Pin<Box<F>>,
}

impl<F: Future> Future for Named<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let previous = ACTOR.with(|a| a.replace(self.name.clone()));
        let r = self.fut.as_mut().poll(cx);
        ACTOR.with(|a| a.replace(previous));
        r
    }
}

/// Spawns `fut` on the current `LocalSet`, named `name` in trace lines.
pub fn spawn<F: Future + 'static>(name: &str, fut: F) -> tokio::task::JoinHandle<F::Output> {
    tokio::task::spawn_local(Named {
        name: name.to_string(),
        fut: Box::pin(fut),
    })
}

/// What one hardware run recorded and how the oracles judged it.
pub struct Outcome {
    pub trace: Vec<String>,
    pub hash: u64,
    pub violations: Vec<models::Violation>,
    pub wall_ms: f64,
}

/// Trace lines with real time.
pub struct Trace {
    pub start: Instant,
    pub lines: RefCell<Vec<String>>,
}

impl Default for Trace {
    fn default() -> Self {
        Self::new()
    }
}

impl Trace {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            lines: RefCell::default(),
        }
    }

    pub fn line(&self, event: &str, details: fmt::Arguments<'_>) {
        let t = self.start.elapsed().as_nanos();
        let actor = ACTOR.with(|a| a.borrow().clone());
        self.lines
            .borrow_mut()
            .push(format!("t={t} {actor} {event} {details}"));
    }

    /// FNV-1a over the lines, as the simulation hashes its trace.
    pub fn hash(lines: &[String]) -> u64 {
        lines.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, l| {
            l.bytes()
                .chain(std::iter::once(b'\n'))
                .fold(h, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
        })
    }
}
