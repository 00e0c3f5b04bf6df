//! `poll_oneoff`: how a WASI program waits. Go's runtime calls it with one clock subscription
//! when every goroutine sleeps, so here a clock-only poll is a sleep of the host's time (in
//! simulation, virtual time: a scheduling point). Descriptor subscriptions are ready at once
//! (stdin at its end, stdout and stderr writable, any other descriptor an event with `EBADF`),
//! and a poll with one ready returns without sleeping, as `poll` does.

use super::{WasiCtx, WasiRequest, arg32, errno, fits, put};
use crate::engine::{GuestMemory, HostOutcome};

const SUBSCRIPTION: u64 = 48;
const EVENT: u64 = 32;

/// `eventtype`.
const CLOCK: u8 = 0;
const FD_READ: u8 = 1;
const FD_WRITE: u8 = 2;

/// `subclockflags`: the timeout is an absolute time of the clock.
const ABSTIME: u16 = 1;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// One event: userdata, errno, type.
fn event(userdata: &[u8], code: i64, kind: u8) -> [u8; EVENT as usize] {
    let mut e = [0u8; EVENT as usize];
    e[..8].copy_from_slice(userdata);
    e[8..10].copy_from_slice(&(code as u16).to_le_bytes());
    e[10] = kind;
    e
}

/// `(in, out, nsubscriptions, nevents_ptr)`.
pub(super) fn poll_oneoff(ctx: &WasiCtx, mem: &mut dyn GuestMemory, a: &[i64]) -> HostOutcome {
    let (input, output, n, nevents_ptr) = (arg32(a, 0), arg32(a, 1), arg32(a, 2), arg32(a, 3));
    if n == 0 {
        return errno(errno::INVAL);
    }
    let (in_len, out_len) = (u64::from(n) * SUBSCRIPTION, u64::from(n) * EVENT);
    if !fits(mem, input, in_len) || !fits(mem, output, out_len) || !fits(mem, nevents_ptr, 4) {
        return errno(errno::FAULT);
    }
    let Ok(subs) = mem.read(input, in_len as u32) else {
        return errno(errno::FAULT);
    };
    let mut ready = Vec::new();
    // Clock subscriptions: (userdata, nanoseconds from now).
    let mut clocks: Vec<(&[u8], u64)> = Vec::new();
    for sub in subs.chunks(SUBSCRIPTION as usize) {
        let userdata = &sub[..8];
        match sub[8] {
            CLOCK => {
                let (id, timeout, flags) = (u32_at(sub, 16), u64_at(sub, 24), u16_at(sub, 40));
                let now = match id {
                    0 => ctx.realtime_ns(),
                    1 => ctx.monotonic_ns(),
                    _ => return errno(errno::INVAL),
                };
                let wait = match flags {
                    0 => timeout,
                    ABSTIME => timeout.saturating_sub(now),
                    _ => return errno(errno::INVAL),
                };
                clocks.push((userdata, wait));
            }
            kind @ (FD_READ | FD_WRITE) => {
                let fd = u32_at(sub, 16);
                let ok = match (ctx.state.borrow().stream(fd), kind) {
                    (None, _) => false,
                    (Some(s), FD_READ) => s == super::state::Stream::Stdin,
                    (Some(s), _) => s != super::state::Stream::Stdin,
                };
                let code = if ok { errno::SUCCESS } else { errno::BADF };
                ready.push(event(userdata, code, kind));
            }
            _ => return errno(errno::INVAL),
        }
    }
    // Nothing ready: sleep until the earliest clock, and report the clocks due by then.
    let mut sleep = 0;
    if ready.is_empty() {
        sleep = clocks.iter().map(|c| c.1).min().unwrap_or(0);
    }
    for (userdata, wait) in &clocks {
        if *wait <= sleep {
            ready.push(event(userdata, errno::SUCCESS, CLOCK));
        }
    }
    let bytes: Vec<u8> = ready.iter().flatten().copied().collect();
    if let HostOutcome::Return(code) = put(mem, output, &bytes)
        && code != errno::SUCCESS
    {
        return errno(code);
    }
    let written = put(mem, nevents_ptr, &(ready.len() as u32).to_le_bytes());
    if sleep == 0 {
        return written;
    }
    ctx.wait(mem, WasiRequest::Sleep { ns: sleep })
}
