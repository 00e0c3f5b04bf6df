//! A host's surroundings outside any simulation, for tools that drive cells on their own
//! (benchmarks, fuzz targets): services that answer without effects (a clock stopped at 0,
//! zero entropy, no storage, no mail, logs dropped, sleeps over at once), fuel slices of a
//! fixed size with no yield between them, and a bounded `block_on` for the host's futures.

use crate::{HostServices, Pacing};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Services that answer at once and keep nothing.
pub struct Quiet;

impl HostServices for Quiet {
    fn now_ns(&self) -> u64 {
        0
    }
    fn entropy(&self, buf: &mut [u8]) {
        buf.fill(0);
    }
    fn sleep(&self, _: u64) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin(std::future::ready(()))
    }
    fn log(&self, _: &str, _: &str) {}
    fn kv_get(&self, _: &str, _: &[u8]) -> Option<Vec<u8>> {
        None
    }
    fn kv_put(&self, _: &str, _: &[u8], _: &[u8]) {}
    fn send(&self, _: &str, _: &str, _: &[u8]) -> bool {
        false
    }
    fn recv(&self, _: &str) -> Option<Vec<u8>> {
        None
    }
}

/// Fuel slices of a fixed size; preemption between them is free.
pub struct FixedSlice(pub u64);

impl Pacing for FixedSlice {
    fn fuel_slice(&self) -> u64 {
        self.0
    }
    fn preempt(&self) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin(std::future::ready(()))
    }
    fn trace(&self, _: &str, _: fmt::Arguments<'_>) {}
}

/// Polls `f` until it is ready, at most `polls` times; `None` if it never was. With [`Quiet`]
/// and [`FixedSlice`] nothing the host awaits stays pending, so an entry finishes in one poll
/// unless it waits for a lock another entry holds.
pub fn block_on<F: Future>(f: F, polls: u64) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..polls {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return Some(v);
        }
    }
    None
}
