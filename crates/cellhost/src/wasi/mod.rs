//! WASI preview1 (`wasi_snapshot_preview1`), bound for every cell on both engines, because
//! every module a real toolchain builds imports it (Go's `wasip1` runtime needs clocks,
//! entropy, `fd_write`, `poll_oneoff`, `sched_yield`, `proc_exit`, arguments and environment;
//! `os`, `fmt` and `log` add the descriptor calls). Pulp's host (wazero) binds it for every
//! cell too.
//!
//! Every function reaches the outside only through the cell's [`HostServices`], the same as
//! the Pulp capabilities, so in simulation the clocks read virtual time, `random_get` draws
//! from the decision stream and output goes to the trace, and in a hardware run the same layer
//! reads the real clock and OS entropy:
//!
//! - `clock_time_get`: realtime from [`HostServices::wall_ns`], monotonic from
//!   [`HostServices::now_ns`]; the CPU-time clocks are `EINVAL` (as in wazero).
//! - `random_get`: [`HostServices::entropy`].
//! - `fd_write` to descriptors 1 and 2: cut into lines, each to [`HostServices::output`].
//! - `poll_oneoff` with only clock subscriptions: a sleep of the host's time
//!   ([`HostServices::sleep`]), a scheduling point; descriptor subscriptions are ready at once.
//! - `sched_yield`: a scheduling point.
//! - `proc_exit(n)`: the export ends and the cell fails with exit code `n`.
//! - arguments and environment: the cell spec's (`CellSpec::args`, `CellSpec::env`), empty
//!   unless whoever loads the cell sets them.
//! - descriptors: the three standard streams and nothing else (no preopened directories):
//!   stdin reads as empty, every path call and every other descriptor answers a typed errno.
//!
//! A waiting function defers its import (the host serves a [`WasiRequest`]); inside a call the
//! host runs to completion (an allocator) it answers at once instead. Every pointer from the
//! guest is bounds-checked, and a bad one is `EFAULT`, never a trap.
//!
//! **Start-up.** A cell's start function (`_initialize`) runs once per module in a fixed
//! environment, not the cell's services: both clocks read 1 ns (plus any time it slept; Go's
//! runtime refuses a monotonic clock of 0), entropy is a fixed stream, output is kept and
//! replayed into the cell's log each time an instance is made. After start-up the monotonic
//! clock is where start-up left it plus the host's time, so it never runs backwards. This is what lets every instance start from one snapshot, in every run of a sweep,
//! with the same results as running the start function itself.

pub mod errno;
mod fs;
mod poll;
mod proc;
pub mod state;

use crate::abi::ValType;
use crate::capability::HostServices;
use crate::engine::{GuestMemory, HostOutcome, Import};
use state::{Stream, WasiState};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// The import module of WASI preview1.
pub const MODULE: &str = "wasi_snapshot_preview1";

/// What a deferred WASI import asks the host to do before it returns (its result is always 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WasiRequest {
    /// Wait this long in the host's time (`poll_oneoff` on clocks).
    Sleep { ns: u64 },
    /// Let others run (`sched_yield`).
    Yield,
}

/// Whether the instance is running its start function or serving the host's entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Start,
    Live,
}

/// The fixed start-up environment: a clock that only moves when start-up sleeps, and a
/// SplitMix64 entropy stream from a constant seed.
#[derive(Clone, Debug)]
struct StartEnv {
    clock_ns: u64,
    rng: u64,
}

impl StartEnv {
    const SEED: u64 = 0x5eed_f0ce_1157_a7e5;

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.rng;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// One instance's WASI context: its services, its arguments and environment, and its state.
pub struct WasiCtx {
    cell: Rc<str>,
    services: Rc<dyn HostServices>,
    args: Vec<String>,
    env: Vec<String>,
    state: RefCell<WasiState>,
    phase: Cell<Phase>,
    start: RefCell<StartEnv>,
    /// Lines written during start-up, as (fd, line).
    start_output: RefCell<Vec<(u32, String)>>,
}

impl WasiCtx {
    /// A context in the start-up phase, every stream open.
    pub fn new(
        cell: Rc<str>,
        services: Rc<dyn HostServices>,
        args: Vec<String>,
        env: Vec<String>,
    ) -> Rc<Self> {
        Rc::new(WasiCtx {
            cell,
            services,
            args,
            env,
            state: RefCell::default(),
            phase: Cell::new(Phase::Start),
            start: RefCell::new(StartEnv {
                clock_ns: 1,
                rng: StartEnv::SEED,
            }),
            start_output: RefCell::default(),
        })
    }

    pub fn phase(&self) -> Phase {
        self.phase.get()
    }

    /// Ends start-up: from now on the cell's services answer. Start-up's unfinished lines
    /// are kept with its output.
    pub fn go_live(&self) {
        self.flush();
        self.state.borrow_mut().mono_base = self.start.borrow().clock_ns;
        self.phase.set(Phase::Live);
    }

    /// The state start-up left (for a start image; after [`WasiCtx::go_live`]).
    pub fn state(&self) -> WasiState {
        self.state.borrow().clone()
    }

    /// Takes a start image's state in place of running start-up, and goes live.
    pub fn restore(&self, state: WasiState) {
        *self.state.borrow_mut() = state;
        self.phase.set(Phase::Live);
    }

    /// The lines start-up wrote, as (fd, line).
    pub fn start_output(&self) -> Vec<(u32, String)> {
        self.start_output.borrow().clone()
    }

    /// Hands out unfinished output lines (at the end of an entry, or when the cell ends).
    pub fn flush(&self) {
        let lines = self.state.borrow_mut().flush();
        for (fd, line) in lines {
            self.emit(fd, line);
        }
    }

    /// Replays lines (a snapshot's start-up output) as this instance's own.
    pub fn replay(&self, lines: &[(u32, String)]) {
        for (fd, line) in lines {
            self.services.output(&self.cell, *fd, line);
        }
    }

    fn emit(&self, fd: u32, line: String) {
        match self.phase.get() {
            Phase::Start => self.start_output.borrow_mut().push((fd, line)),
            Phase::Live => self.services.output(&self.cell, fd, &line),
        }
    }

    fn write_stream(&self, stream: Stream, bytes: &[u8]) {
        let fd = if stream == Stream::Stderr {
            state::STDERR
        } else {
            state::STDOUT
        };
        let lines = self.state.borrow_mut().write(stream, bytes);
        for line in lines {
            self.emit(fd, line);
        }
    }

    fn monotonic_ns(&self) -> u64 {
        match self.phase.get() {
            Phase::Start => self.start.borrow().clock_ns,
            Phase::Live => self
                .state
                .borrow()
                .mono_base
                .saturating_add(self.services.now_ns()),
        }
    }

    fn realtime_ns(&self) -> u64 {
        match self.phase.get() {
            Phase::Start => self.start.borrow().clock_ns,
            Phase::Live => self.services.wall_ns(),
        }
    }

    fn entropy(&self, buf: &mut [u8]) {
        match self.phase.get() {
            Phase::Start => self.start.borrow_mut().fill(buf),
            Phase::Live => self.services.entropy(buf),
        }
    }

    /// Waits `ns`: at start-up the start clock just moves; inside a call that may not suspend
    /// the wait is over at once; otherwise the host serves it.
    fn wait(&self, mem: &dyn GuestMemory, request: WasiRequest) -> HostOutcome {
        if self.phase.get() == Phase::Start {
            if let WasiRequest::Sleep { ns } = request {
                let mut start = self.start.borrow_mut();
                start.clock_ns = start.clock_ns.saturating_add(ns);
            }
            return HostOutcome::Return(errno::SUCCESS);
        }
        if !mem.may_suspend() {
            return HostOutcome::Return(errno::SUCCESS);
        }
        HostOutcome::Defer(Box::new(request))
    }
}

type Handler = fn(&WasiCtx, &mut dyn GuestMemory, &[i64]) -> HostOutcome;

const I32: ValType = ValType::I32;
const I64: ValType = ValType::I64;
const ERRNO: &[ValType] = &[I32];

/// Every preview1 function: (name, params, results, handler). A module importing anything else
/// from `wasi_snapshot_preview1` does not load.
const FUNCTIONS: &[(&str, &[ValType], &[ValType], Handler)] = &[
    ("args_get", &[I32, I32], ERRNO, proc::args_get),
    ("args_sizes_get", &[I32, I32], ERRNO, proc::args_sizes_get),
    ("environ_get", &[I32, I32], ERRNO, proc::environ_get),
    (
        "environ_sizes_get",
        &[I32, I32],
        ERRNO,
        proc::environ_sizes_get,
    ),
    ("clock_res_get", &[I32, I32], ERRNO, proc::clock_res_get),
    (
        "clock_time_get",
        &[I32, I64, I32],
        ERRNO,
        proc::clock_time_get,
    ),
    ("fd_advise", &[I32, I64, I64, I32], ERRNO, fs::no_seek),
    ("fd_allocate", &[I32, I64, I64], ERRNO, fs::no_seek),
    ("fd_close", &[I32], ERRNO, fs::fd_close),
    ("fd_datasync", &[I32], ERRNO, fs::not_supported),
    ("fd_fdstat_get", &[I32, I32], ERRNO, fs::fd_fdstat_get),
    (
        "fd_fdstat_set_flags",
        &[I32, I32],
        ERRNO,
        fs::fd_fdstat_set_flags,
    ),
    (
        "fd_fdstat_set_rights",
        &[I32, I64, I64],
        ERRNO,
        fs::no_system,
    ),
    ("fd_filestat_get", &[I32, I32], ERRNO, fs::fd_filestat_get),
    (
        "fd_filestat_set_size",
        &[I32, I64],
        ERRNO,
        fs::not_supported,
    ),
    (
        "fd_filestat_set_times",
        &[I32, I64, I64, I32],
        ERRNO,
        fs::not_supported,
    ),
    ("fd_pread", &[I32, I32, I32, I64, I32], ERRNO, fs::no_seek),
    ("fd_prestat_get", &[I32, I32], ERRNO, fs::no_preopen),
    (
        "fd_prestat_dir_name",
        &[I32, I32, I32],
        ERRNO,
        fs::no_preopen,
    ),
    ("fd_pwrite", &[I32, I32, I32, I64, I32], ERRNO, fs::no_seek),
    ("fd_read", &[I32, I32, I32, I32], ERRNO, fs::fd_read),
    (
        "fd_readdir",
        &[I32, I32, I32, I64, I32],
        ERRNO,
        fs::not_a_directory,
    ),
    ("fd_renumber", &[I32, I32], ERRNO, fs::fd_renumber),
    ("fd_seek", &[I32, I64, I32, I32], ERRNO, fs::no_seek),
    ("fd_sync", &[I32], ERRNO, fs::not_supported),
    ("fd_tell", &[I32, I32], ERRNO, fs::no_seek),
    ("fd_write", &[I32, I32, I32, I32], ERRNO, fs::fd_write),
    (
        "path_create_directory",
        &[I32, I32, I32],
        ERRNO,
        fs::not_a_directory,
    ),
    (
        "path_filestat_get",
        &[I32, I32, I32, I32, I32],
        ERRNO,
        fs::not_a_directory,
    ),
    (
        "path_filestat_set_times",
        &[I32, I32, I32, I32, I64, I64, I32],
        ERRNO,
        fs::not_a_directory,
    ),
    ("path_link", &[I32; 7], ERRNO, fs::not_a_directory),
    (
        "path_open",
        &[I32, I32, I32, I32, I32, I64, I64, I32, I32],
        ERRNO,
        fs::not_a_directory,
    ),
    ("path_readlink", &[I32; 6], ERRNO, fs::not_a_directory),
    (
        "path_remove_directory",
        &[I32, I32, I32],
        ERRNO,
        fs::not_a_directory,
    ),
    ("path_rename", &[I32; 6], ERRNO, fs::not_a_directory),
    ("path_symlink", &[I32; 5], ERRNO, fs::path_symlink),
    (
        "path_unlink_file",
        &[I32, I32, I32],
        ERRNO,
        fs::not_a_directory,
    ),
    (
        "poll_oneoff",
        &[I32, I32, I32, I32],
        ERRNO,
        poll::poll_oneoff,
    ),
    ("proc_exit", &[I32], &[], proc::proc_exit),
    ("proc_raise", &[I32], ERRNO, fs::no_system),
    ("sched_yield", &[], ERRNO, proc::sched_yield),
    ("random_get", &[I32, I32], ERRNO, proc::random_get),
    ("sock_accept", &[I32, I32, I32], ERRNO, fs::not_a_socket),
    ("sock_recv", &[I32; 6], ERRNO, fs::not_a_socket),
    ("sock_send", &[I32; 5], ERRNO, fs::not_a_socket),
    ("sock_shutdown", &[I32, I32], ERRNO, fs::not_a_socket),
];

/// The names of every function this layer binds.
pub fn function_names() -> impl Iterator<Item = &'static str> {
    FUNCTIONS.iter().map(|f| f.0)
}

/// The imports of module `wasi_snapshot_preview1` for one instance.
pub fn imports(ctx: &Rc<WasiCtx>) -> Vec<Import> {
    FUNCTIONS
        .iter()
        .map(|&(name, params, results, handler)| {
            let ctx = ctx.clone();
            Import {
                module: MODULE,
                name,
                params,
                results,
                run: Rc::new(move |mem, args| handler(&ctx, mem, args)),
            }
        })
        .collect()
}

/// Argument `i` as a u32 (a wasm i32 arrives sign-extended).
fn arg32(args: &[i64], i: usize) -> u32 {
    args.get(i).map_or(0, |x| *x as u32)
}

fn errno(code: i64) -> HostOutcome {
    HostOutcome::Return(code)
}

fn read_u32(mem: &dyn GuestMemory, ptr: u32) -> Option<u32> {
    let b = mem.read(ptr, 4).ok()?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Writes `bytes` at `ptr`; `EFAULT` if it does not fit.
fn put(mem: &mut dyn GuestMemory, ptr: u32, bytes: &[u8]) -> HostOutcome {
    match mem.write(ptr, bytes) {
        Ok(()) => errno(errno::SUCCESS),
        Err(_) => errno(errno::FAULT),
    }
}

/// Whether `[ptr, ptr + len)` lies inside the memory.
fn fits(mem: &dyn GuestMemory, ptr: u32, len: u64) -> bool {
    u64::from(ptr)
        .checked_add(len)
        .is_some_and(|end| end <= mem.size())
}

#[cfg(test)]
mod tests;
