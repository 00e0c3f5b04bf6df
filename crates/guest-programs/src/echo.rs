//! The `pipe-echo` workload: the guest opens pipes through the control pipe and streams bytes to
//! the monitor's echo relays, reading back what comes round.
//!
//! Each pipe has a sender and a receiver kernel thread on separate pipe ends. A receiver may
//! abandon its pipe early (closing its read side), so the writers meet a dead reader. A pipe may
//! instead be shared by two writer threads sending tagged frames under a guest mutex (or, with
//! `two_producers`, through two producers on one ring: a planted bug). When the receivers are done
//! the main thread closes the pipes and the control pipe.
//!
//! The workload only records what it saw (`Results`); the oracles that judge it live outside the
//! guest.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::future::Future;
use guest::sync::{Latch, Mutex};
use guest::{ControlClient, KernelHandle, PipeEnd, PipeError};
use hv::{Doorbell, IrqWaiter};
use ring_pipe::msg::{PipeInfo, Protocol, Wire};
use ring_pipe::{RingError, SharedMemory};

mod wire;

pub use wire::PlanError;

/// The whole workload of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub pipes: Vec<PipePlan>,
    /// The shared pipe's writers each attach their own producer instead of taking the lock
    /// (planted bug `pipe-two-writers`).
    pub two_producers: bool,
}

/// One echo pipe.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PipePlan {
    /// Ring size asked of the monitor.
    pub ring: u64,
    /// Bytes the sender streams (unused when `shared` is set).
    pub data: Vec<u8>,
    /// Bytes per `write_all` call (0 is taken as 1).
    pub chunk: usize,
    /// The receiver closes its read side after this many bytes.
    pub abandon_after: Option<usize>,
    /// Frames per writer, when the pipe is shared by two writers.
    pub shared: Option<Vec<Vec<Vec<u8>>>>,
}

/// Deterministic bytes from a key (xorshift64*), so payloads need not be drawn byte by byte.
pub fn bytes_from(key: u64, len: usize) -> Vec<u8> {
    let mut x = key | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// Derives a plan. `derive(name, lo, hi)` returns a value in `lo..=hi` (in the simulation, a
/// seeded decision recorded as option `name`); the names and their order are part of every
/// replay, so they must not change. `two_producers` is not derived: it is a planted bug, left
/// `false` for the caller to set.
pub fn plan(derive: &mut dyn FnMut(&str, u64, u64) -> u64) -> Plan {
    let pipes = derive("pipes", 1, 4) as usize;
    let shared_pipe = derive("shared_pipe", 0, 2) == 0;
    let mut plans = Vec::new();
    for i in 0..pipes {
        let ring = 64 << derive(&format!("p{i}_ring_shift"), 0, 4);
        let len = derive(&format!("p{i}_bytes"), 0, 3000) as usize;
        let chunk = derive(&format!("p{i}_chunk"), 1, 300) as usize;
        let key = derive(&format!("p{i}_key"), 0, u64::from(u32::MAX));
        let shared = (i == 0 && shared_pipe).then(|| {
            (0..2u64)
                .map(|w| {
                    (0..1 + (key >> (w * 3)) % 8)
                        .map(|f| bytes_from(key ^ (w << 32) ^ f, ((key >> f) % 41) as usize))
                        .collect()
                })
                .collect()
        });
        let abandon_after = if shared.is_none() && derive(&format!("p{i}_abandon"), 0, 4) == 0 {
            Some(derive(&format!("p{i}_abandon_after"), 0, len as u64) as usize)
        } else {
            None
        };
        plans.push(PipePlan {
            ring,
            data: bytes_from(key, len),
            chunk,
            abandon_after,
            shared,
        });
    }
    Plan {
        pipes: plans,
        two_producers: false,
    }
}

/// One frame of a shared pipe: writer tag, sequence number, length, payload (all
/// little-endian), so the oracle can tell interleaved writers apart. `payload` is at most
/// `u16::MAX` bytes (a decoded plan guarantees it).
pub fn tagged_frame(writer: u8, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(7 + payload.len());
    f.push(writer);
    f.extend_from_slice(&seq.to_le_bytes());
    f.extend_from_slice(&(payload.len() as u16).to_le_bytes());
    f.extend_from_slice(payload);
    f
}

/// What the workload saw: bytes received per pipe, and every error it met.
#[derive(Debug, Default)]
pub struct Results {
    pub received: BTreeMap<usize, Vec<u8>>,
    /// The pipe id (as on the wire) each of the plan's pipes got, so that oracles name a pipe
    /// as the monitor, the trace and the liveness checks do.
    pub pipe_ids: BTreeMap<usize, u64>,
    pub errors: Vec<String>,
}

/// Results shared by the workload's kernel threads.
pub type Shared = Rc<RefCell<Results>>;

pub fn record_error(results: &Shared, what: String) {
    results.borrow_mut().errors.push(what);
}

/// What the workload needs from the guest it runs in: pipe ends and kernel threads.
pub trait GuestOs: Clone + 'static {
    type Mem: SharedMemory + Clone + 'static;
    type Bell: Doorbell + 'static;
    type Irq: IrqWaiter + 'static;

    /// Attaches a new end to a pipe the host has set up.
    fn attach(&self, info: &PipeInfo) -> impl Future<Output = Result<Pipe<Self>, PipeError>>;

    fn kernel(&self) -> &KernelHandle;
}

/// A pipe end in guest `G`.
pub type Pipe<G> = PipeEnd<<G as GuestOs>::Mem, <G as GuestOs>::Bell, <G as GuestOs>::Irq>;

/// The workload's main kernel thread. `control` is the control pipe, known to both sides at boot.
/// Errors go to `results`.
pub async fn run<G: GuestOs>(os: G, control: PipeInfo, plan: Rc<Plan>, results: Shared) {
    if let Err(e) = guest_main(&os, &control, plan, &results).await {
        record_error(&results, format!("main: {e}"));
    }
}

async fn guest_main<G: GuestOs>(
    os: &G,
    control: &PipeInfo,
    plan: Rc<Plan>,
    results: &Shared,
) -> Result<(), PipeError> {
    let mut control = ControlClient::new(os.attach(control).await?);
    let done = Latch::new(plan.pipes.len() as u64);
    let mut ids = Vec::new();
    for (i, pipe) in plan.pipes.iter().enumerate() {
        let info = control.new_pipe(pipe.ring).await?;
        ids.push(info.pipe_id);
        results.borrow_mut().pipe_ids.insert(i, info.pipe_id);
        // Threads are named by the pipe's id, as everything else names the pipe.
        let id = info.pipe_id;
        let mut writer_end = os.attach(&info).await?;
        writer_end.send_frame(&Protocol::Echo.encode()).await?;
        let reader_end = os.attach(&info).await?;
        let (r, d, abandon) = (results.clone(), done.clone(), pipe.abandon_after);
        os.kernel().spawn(&format!("recv{id}"), async move {
            receive(i, reader_end, abandon, &r).await;
            d.count_down();
        });
        match &pipe.shared {
            None => {
                let (r, plan) = (results.clone(), plan.clone());
                os.kernel().spawn(&format!("send{id}"), async move {
                    // `i` indexes the same immutable plan this loop walks.
                    let pipe = &plan.pipes[i];
                    send(
                        writer_end,
                        &pipe.data,
                        pipe.chunk,
                        pipe.abandon_after.is_some(),
                        &r,
                    )
                    .await;
                });
            }
            Some(frames) => {
                let writers_left = Latch::new(frames.len() as u64);
                let shared_end = Rc::new(Mutex::new(writer_end));
                for (w, own) in frames.iter().enumerate() {
                    let end = if plan.two_producers {
                        Some(os.attach(&info).await?)
                    } else {
                        None
                    };
                    let (own, shared_end, r, left) = (
                        own.clone(),
                        shared_end.clone(),
                        results.clone(),
                        writers_left.clone(),
                    );
                    os.kernel().spawn(&format!("writer{id}.{w}"), async move {
                        if let Err(e) = write_frames(w as u8, own, end, &shared_end, &left).await {
                            record_error(&r, format!("pipe {id}: writer {w}: {e}"));
                        }
                    });
                }
            }
        }
    }
    done.wait().await;
    for id in ids {
        control.close_pipe(id).await?;
    }
    control.shutdown().await
}

/// Streams `data` in `chunk`-byte writes, then closes the write side. With `abandoned`, the
/// reader's early close ends the stream without an error.
pub async fn send<M: SharedMemory + Clone, D: Doorbell, I: IrqWaiter>(
    mut end: PipeEnd<M, D, I>,
    data: &[u8],
    chunk: usize,
    abandoned: bool,
    results: &Shared,
) {
    for part in data.chunks(chunk.max(1)) {
        match end.write_all(part).await {
            Ok(()) => {}
            // An abandoned pipe's reader is gone: stopping is the right outcome.
            Err(PipeError::Ring(RingError::PeerClosed)) if abandoned => return,
            Err(e) => return record_error(results, format!("pipe {}: send: {e}", end.id())),
        }
    }
    if let Err(e) = end.close_write().await {
        record_error(results, format!("pipe {}: send close: {e}", end.id()));
    }
}

/// Reads to end-of-file (or, with `abandon_after`, that many bytes, then closes the read side)
/// and records the bytes as pipe `i`'s.
pub async fn receive<M: SharedMemory + Clone, D: Doorbell, I: IrqWaiter>(
    i: usize,
    mut end: PipeEnd<M, D, I>,
    abandon_after: Option<usize>,
    results: &Shared,
) {
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let want = match abandon_after {
            Some(limit) if got.len() >= limit => break,
            Some(limit) => (limit - got.len()).min(buf.len()),
            None => buf.len(),
        };
        match end.read(&mut buf[..want]).await {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => {
                record_error(results, format!("pipe {}: recv: {e}", end.id()));
                break;
            }
        }
    }
    if abandon_after.is_some()
        && let Err(e) = end.close_read().await
    {
        record_error(results, format!("pipe {}: recv close: {e}", end.id()));
    }
    results.borrow_mut().received.insert(i, got);
}

/// One of two writers on a shared pipe: whole tagged frames under the pipe's lock (or, with the
/// planted bug, through its own producer on the same ring). The last writer closes the pipe.
async fn write_frames<M: SharedMemory + Clone, D: Doorbell, I: IrqWaiter>(
    w: u8,
    frames: Vec<Vec<u8>>,
    own_end: Option<PipeEnd<M, D, I>>,
    shared: &Mutex<PipeEnd<M, D, I>>,
    writers_left: &Latch,
) -> Result<(), PipeError> {
    let mut own_end = own_end;
    for (seq, payload) in frames.iter().enumerate() {
        let frame = tagged_frame(w, seq as u32, payload);
        match own_end.as_mut() {
            Some(end) => end.write_all(&frame).await?,
            None => shared.lock().await.write_all(&frame).await?,
        }
    }
    writers_left.count_down();
    writers_left.wait().await;
    if w == 0 {
        shared.lock().await.close_write().await?;
    }
    Ok(())
}
