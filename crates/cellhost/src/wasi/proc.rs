//! Process-level WASI functions: arguments and environment, clocks, entropy, yielding and
//! exiting.

use super::{WasiCtx, WasiRequest, arg32, errno, fits, put};
use crate::engine::{GuestMemory, HostOutcome};

/// Clock ids (`clockid`).
const REALTIME: u32 = 0;
const MONOTONIC: u32 = 1;

/// The length of `values` as NUL-terminated strings.
fn total_len(values: &[String]) -> u64 {
    values.iter().map(|v| v.len() as u64 + 1).sum()
}

/// Writes the count and total length of `values` at `count_ptr` and `len_ptr`.
fn sizes(mem: &mut dyn GuestMemory, values: &[String], args: &[i64]) -> HostOutcome {
    let (count_ptr, len_ptr) = (arg32(args, 0), arg32(args, 1));
    let (Ok(count), Ok(len)) = (
        u32::try_from(values.len()),
        u32::try_from(total_len(values)),
    ) else {
        return errno(errno::INVAL);
    };
    if !fits(mem, count_ptr, 4) || !fits(mem, len_ptr, 4) {
        return errno(errno::FAULT);
    }
    match put(mem, count_ptr, &count.to_le_bytes()) {
        HostOutcome::Return(0) => put(mem, len_ptr, &len.to_le_bytes()),
        other => other,
    }
}

/// Writes `values` as NUL-terminated strings at `buf` and a pointer to each at `ptrs`.
fn strings(mem: &mut dyn GuestMemory, values: &[String], args: &[i64]) -> HostOutcome {
    let (ptrs, buf) = (arg32(args, 0), arg32(args, 1));
    if !fits(mem, ptrs, values.len() as u64 * 4) || !fits(mem, buf, total_len(values)) {
        return errno(errno::FAULT);
    }
    let (mut table, mut bytes) = (Vec::new(), Vec::new());
    for v in values {
        // `fits` above bounds every offset by the memory's size, which is below 2^32.
        table.extend_from_slice(&(buf + bytes.len() as u32).to_le_bytes());
        bytes.extend_from_slice(v.as_bytes());
        bytes.push(0);
    }
    match put(mem, ptrs, &table) {
        HostOutcome::Return(0) => put(mem, buf, &bytes),
        other => other,
    }
}

pub(super) fn args_sizes_get(ctx: &WasiCtx, mem: &mut dyn GuestMemory, a: &[i64]) -> HostOutcome {
    sizes(mem, &ctx.args, a)
}

pub(super) fn args_get(ctx: &WasiCtx, mem: &mut dyn GuestMemory, a: &[i64]) -> HostOutcome {
    strings(mem, &ctx.args, a)
}

pub(super) fn environ_sizes_get(
    ctx: &WasiCtx,
    mem: &mut dyn GuestMemory,
    a: &[i64],
) -> HostOutcome {
    sizes(mem, &ctx.env, a)
}

pub(super) fn environ_get(ctx: &WasiCtx, mem: &mut dyn GuestMemory, a: &[i64]) -> HostOutcome {
    strings(mem, &ctx.env, a)
}

/// Both clocks tick in nanoseconds.
pub(super) fn clock_res_get(_: &WasiCtx, mem: &mut dyn GuestMemory, a: &[i64]) -> HostOutcome {
    match arg32(a, 0) {
        REALTIME | MONOTONIC => put(mem, arg32(a, 1), &1u64.to_le_bytes()),
        _ => errno(errno::INVAL),
    }
}

/// `(id, precision, result_ptr)`.
pub(super) fn clock_time_get(ctx: &WasiCtx, mem: &mut dyn GuestMemory, a: &[i64]) -> HostOutcome {
    let now = match arg32(a, 0) {
        REALTIME => ctx.realtime_ns(),
        MONOTONIC => ctx.monotonic_ns(),
        _ => return errno(errno::INVAL),
    };
    put(mem, arg32(a, 2), &now.to_le_bytes())
}

/// `(buf, len)`: fills the buffer from the cell's entropy.
pub(super) fn random_get(ctx: &WasiCtx, mem: &mut dyn GuestMemory, a: &[i64]) -> HostOutcome {
    let (ptr, len) = (arg32(a, 0), arg32(a, 1));
    if !fits(mem, ptr, u64::from(len)) {
        return errno(errno::FAULT);
    }
    let mut buf = vec![0u8; len as usize];
    ctx.entropy(&mut buf);
    put(mem, ptr, &buf)
}

pub(super) fn sched_yield(ctx: &WasiCtx, mem: &mut dyn GuestMemory, _: &[i64]) -> HostOutcome {
    ctx.wait(mem, WasiRequest::Yield)
}

/// Ends the export; the host fails the cell with this code. Output not yet cut into lines
/// goes out first, so a message without a final newline is not lost.
pub(super) fn proc_exit(ctx: &WasiCtx, _: &mut dyn GuestMemory, a: &[i64]) -> HostOutcome {
    ctx.flush();
    HostOutcome::Exit(arg32(a, 0))
}
