//! `pipe-echo`: the guest opens pipes through the control pipe and streams bytes to the monitor's
//! echo relays, over many ring sizes and chunkings, with ring cursors starting near u64::MAX.
//!
//! Workload (derived per seed): 1–4 pipes, each with a ring of 64–1024 bytes, up to 3000 bytes in
//! chunks of 1–300. Each pipe has a sender and a receiver kernel thread on separate pipe ends. A
//! receiver may abandon its pipe early (closing its read side), so the writers meet a dead
//! reader. Sometimes pipe 0 is shared by two writer threads sending tagged frames under a guest
//! mutex. When the receivers are done the main thread closes the pipes and the control pipe.
//!
//! Oracles: byte conservation per pipe (exact, or a prefix when abandoned), frame integrity on the
//! shared pipe, liveness at quiescence (no party parked while its ring is readable, writable or
//! closed; no deadlock; no spinning past the progress budget), no panic anywhere, no
//! out-of-bounds access by the monitor, no guest error on a healthy pipe.

use crate::pipes::files::SimFiles;
use crate::pipes::net::SimNet;
use crate::pipes::world::{self, Bugs, GuestEnv, GuestPipe, PipeWorld};
use crate::{PlantedBug, Scenario, Setup, Violation};
use guest::sync::{Latch, Mutex};
use guest::{ControlClient, PipeError};
use models::pipes::{check_direction, check_tagged_stream, tagged_frame};
use monitor::control_pipe_info;
use ring_pipe::RingError;
use ring_pipe::msg::{Protocol, Wire};
use simkit::{KernelOptions, MemMode};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

pub struct PipeEcho;

const EOF_BEFORE_DRAIN: &str = "pipe-eof-before-drain";
const LOST_WAKEUP: &str = "pipe-lost-wakeup";
const CLOSE_NO_DOORBELL: &str = "pipe-close-no-doorbell";
const PUBLISH_BEFORE_DATA: &str = "pipe-publish-before-data";
const WEAK_FENCE: &str = "pipe-weak-fence";
const WRAP_OFF_BY_ONE: &str = "pipe-wrap-off-by-one";
const SPIN_DEAD_PEER: &str = "pipe-spin-dead-peer";
const TWO_WRITERS: &str = "pipe-two-writers";

static BUGS: &[PlantedBug] = &[
    PlantedBug {
        name: EOF_BEFORE_DRAIN,
        scenario: "pipe-echo",
        description: "the monitor's reader checks the cursor before the close flag and reports end-of-file with bytes still in the ring",
        mirrors: "Arca data-pipe sync_stream.rs read_exact (604f3af), monitor relay.rs pipe_to_tcp, uni.rs Reader::read",
        needs_mem: None,
    },
    PlantedBug {
        name: LOST_WAKEUP,
        scenario: "pipe-echo",
        description: "the guest's wait-for-interrupt forgets an interrupt delivered between its check and its halt",
        mirrors: "Arca kthread::wfi + hlt (INTERRUPTED checked only after hlt); acrn-hypervisor#2623, hermit-os/kernel#2669",
        needs_mem: None,
    },
    PlantedBug {
        name: CLOSE_NO_DOORBELL,
        scenario: "pipe-echo",
        description: "closing the guest's write side does not ring the doorbell, so the monitor never sees end-of-file",
        mirrors: "Arca pr-2 / pr-4.1 bidirectional_pipe.rs (doorbell rung on read/write but not on close)",
        needs_mem: None,
    },
    PlantedBug {
        name: PUBLISH_BEFORE_DATA,
        scenario: "pipe-echo",
        description: "the guest publishes its write cursor with a relaxed store (missing release)",
        mirrors: "rust-embedded/heapless#5, eclipse-iceoryx/iceoryx2#119, filipdulic/bus-queue#3",
        needs_mem: Some(MemMode::Relaxed),
    },
    PlantedBug {
        name: WEAK_FENCE,
        scenario: "pipe-echo",
        description: "notification suppression uses AcqRel fences where the handshake needs SeqCst",
        mirrors: "rust-vmm/vm-virtio#18, axboe/liburing#541, tokio-rs/io-uring#281, cloud-hypervisor#2179",
        needs_mem: None,
    },
    PlantedBug {
        name: WRAP_OFF_BY_ONE,
        scenario: "pipe-echo",
        description: "the guest's split copy at the end of the ring data is off by one byte",
        mirrors: "rust-vmm/vm-virtio#363, oasis-tcs/virtio-spec#35 (ring wrap-around)",
        needs_mem: None,
    },
    PlantedBug {
        name: SPIN_DEAD_PEER,
        scenario: "pipe-echo",
        description: "the guest's write_all treats a closed reader as a full ring and retries forever",
        mirrors: "Arca pipe/src/traits.rs write_all and relay tcp_to_pipe; pr-4.1 vmm/src/monitor.rs pipe_to_request",
        needs_mem: None,
    },
    PlantedBug {
        name: TWO_WRITERS,
        scenario: "pipe-echo",
        description: "two guest threads write one SPSC ring through separate producers, without a lock",
        mirrors: "Arca control/src/codec.rs write_frame with several Arca threads (PROTOCOL.md §7)",
        needs_mem: None,
    },
];

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

struct Plan {
    ring: u64,
    data: Vec<u8>,
    chunk: usize,
    abandon_after: Option<usize>,
    /// Frames per writer, when the pipe is shared by two writers.
    shared: Option<Vec<Vec<Vec<u8>>>>,
}

#[derive(Default)]
pub(crate) struct Results {
    pub(crate) received: BTreeMap<usize, Vec<u8>>,
    pub(crate) errors: Vec<String>,
}

pub(crate) type Shared = Rc<RefCell<Results>>;

pub(crate) fn record_error(results: &Shared, what: String) {
    results.borrow_mut().errors.push(what);
}

impl Scenario for PipeEcho {
    fn name(&self) -> &'static str {
        "pipe-echo"
    }

    fn description(&self) -> &'static str {
        "guest <-> monitor echo over 1-4 pipes: sizes, chunkings, wrap-around near u64::MAX, abandoned readers, shared writers"
    }

    fn expected_steps(&self) -> u64 {
        3_000
    }

    fn kernel_options(&self) -> KernelOptions {
        world::kernel_options()
    }

    fn bugs(&self) -> &'static [PlantedBug] {
        BUGS
    }

    fn run(&self, setup: &mut Setup) -> Vec<Violation> {
        let pipes = setup.derive("pipes", 1, 4) as usize;
        let shared_pipe = setup.derive("shared_pipe", 0, 2) == 0;
        let mut plans = Vec::new();
        for i in 0..pipes {
            let ring = 64 << setup.derive(&format!("p{i}_ring_shift"), 0, 4);
            let len = setup.derive(&format!("p{i}_bytes"), 0, 3000) as usize;
            let chunk = setup.derive(&format!("p{i}_chunk"), 1, 300) as usize;
            let key = setup.derive(&format!("p{i}_key"), 0, u64::from(u32::MAX));
            let shared = (i == 0 && shared_pipe).then(|| {
                (0..2u64)
                    .map(|w| {
                        (0..1 + (key >> (w * 3)) % 8)
                            .map(|f| bytes_from(key ^ (w << 32) ^ f, ((key >> f) % 41) as usize))
                            .collect()
                    })
                    .collect()
            });
            let abandon_after =
                if shared.is_none() && setup.derive(&format!("p{i}_abandon"), 0, 4) == 0 {
                    Some(setup.derive(&format!("p{i}_abandon_after"), 0, len as u64) as usize)
                } else {
                    None
                };
            plans.push(Plan {
                ring,
                data: bytes_from(key, len),
                chunk,
                abandon_after,
                shared,
            });
        }
        let mut bugs = Bugs::default();
        if setup.planted(EOF_BEFORE_DRAIN) {
            bugs.host_ring |= ring_pipe::planted::EOF_BEFORE_DRAIN;
        }
        if setup.planted(LOST_WAKEUP) {
            bugs.hv |= hv::sim::planted::WFI_LOST_WAKEUP;
        }
        if setup.planted(CLOSE_NO_DOORBELL) {
            bugs.guest |= guest::planted::CLOSE_NO_DOORBELL;
        }
        if setup.planted(PUBLISH_BEFORE_DATA) {
            bugs.guest_ring |= ring_pipe::planted::PUBLISH_BEFORE_DATA;
        }
        if setup.planted(WEAK_FENCE) {
            bugs.guest_ring |= ring_pipe::planted::WEAK_SUPPRESSION_FENCE;
            bugs.host_ring |= ring_pipe::planted::WEAK_SUPPRESSION_FENCE;
        }
        if setup.planted(WRAP_OFF_BY_ONE) {
            bugs.guest_ring |= ring_pipe::planted::WRAP_OFF_BY_ONE;
        }
        if setup.planted(SPIN_DEAD_PEER) {
            bugs.guest |= guest::planted::SPIN_ON_DEAD_PEER;
        }
        let two_producers = setup.planted(TWO_WRITERS);

        let plans = Rc::new(plans);
        let results: Shared = Rc::default();
        let files = Rc::new(SimFiles::new(setup.ctx()));
        let region_len = 256 * 1024;
        let (p, r) = (plans.clone(), results.clone());
        let world = PipeWorld::boot(
            setup,
            region_len,
            bugs,
            files,
            SimNet::none(),
            move |env| async move {
                if let Err(e) = guest_main(env, p, r.clone(), two_producers).await {
                    record_error(&r, format!("main: {e}"));
                }
            },
        );

        let outcome = setup.sim.run();
        let results = results.borrow();
        let mut v = world.common_checks(&outcome, &results.errors);
        // Every received byte crossed the pipe twice (guest to monitor and back).
        let echoed: usize = results.received.values().map(Vec::len).sum();
        setup.metric("pipe_bytes", 2 * echoed as u64);
        for (i, plan) in plans.iter().enumerate() {
            let got = results.received.get(&i).cloned().unwrap_or_default();
            match &plan.shared {
                Some(frames) => v.extend(check_tagged_stream(i as u64, &got, frames)),
                None => v.extend(check_direction(
                    i as u64,
                    "echo",
                    &plan.data,
                    &got,
                    plan.abandon_after.is_some(),
                )),
            }
        }
        v
    }
}

async fn guest_main(
    env: GuestEnv,
    plans: Rc<Vec<Plan>>,
    results: Shared,
    two_producers: bool,
) -> Result<(), PipeError> {
    let mut control = ControlClient::new(env.attach(&control_pipe_info()).await?);
    let done = Latch::new(plans.len() as u64);
    let mut ids = Vec::new();
    for (i, plan) in plans.iter().enumerate() {
        let info = control.new_pipe(plan.ring).await?;
        ids.push(info.pipe_id);
        let mut writer_end = env.attach(&info).await?;
        writer_end.send_frame(&Protocol::Echo.encode()).await?;
        let reader_end = env.attach(&info).await?;
        let (r, d, abandon) = (results.clone(), done.clone(), plan.abandon_after);
        env.kernel.spawn(&format!("recv{i}"), async move {
            receive(i, reader_end, abandon, &r).await;
            d.count_down();
        });
        match &plan.shared {
            None => {
                let (r, plans) = (results.clone(), plans.clone());
                env.kernel.spawn(&format!("send{i}"), async move {
                    let plan = &plans[i];
                    send(
                        i,
                        writer_end,
                        &plan.data,
                        plan.chunk,
                        plan.abandon_after.is_some(),
                        &r,
                    )
                    .await;
                });
            }
            Some(frames) => {
                let writers_left = Latch::new(frames.len() as u64);
                let shared_end = Rc::new(Mutex::new(writer_end));
                for (w, own) in frames.iter().enumerate() {
                    let end = if two_producers {
                        Some(env.attach(&info).await?)
                    } else {
                        None
                    };
                    let (own, shared_end, r, left) = (
                        own.clone(),
                        shared_end.clone(),
                        results.clone(),
                        writers_left.clone(),
                    );
                    env.kernel.spawn(&format!("writer{i}.{w}"), async move {
                        if let Err(e) = write_frames(w as u8, own, end, &shared_end, &left).await {
                            record_error(&r, format!("writer {i}.{w}: {e}"));
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

pub(crate) async fn send(
    i: usize,
    mut end: GuestPipe,
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
            Err(e) => return record_error(results, format!("send {i}: {e}")),
        }
    }
    if let Err(e) = end.close_write().await {
        record_error(results, format!("send {i} close: {e}"));
    }
}

pub(crate) async fn receive(
    i: usize,
    mut end: GuestPipe,
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
                record_error(results, format!("recv {i}: {e}"));
                break;
            }
        }
    }
    if abandon_after.is_some()
        && let Err(e) = end.close_read().await
    {
        record_error(results, format!("recv {i} close: {e}"));
    }
    results.borrow_mut().received.insert(i, got);
}

/// One of two writers on a shared pipe: whole tagged frames under the pipe's lock (or, with the
/// planted bug, through its own producer on the same ring). The last writer closes the pipe.
async fn write_frames(
    w: u8,
    frames: Vec<Vec<u8>>,
    own_end: Option<GuestPipe>,
    shared: &Mutex<GuestPipe>,
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
