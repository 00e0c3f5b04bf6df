//! Runs per second of one small shared-memory workload on simkit and on shuttle, one core.
//!
//! The workload: a single-producer single-consumer byte ring of 4 bytes. The producer streams 8
//! bytes in chunks of 3 and closes; the consumer reads to end of stream and checks the bytes.
//! Either side that finds the ring full (empty) announces that it sleeps, makes a SeqCst store
//! and a SeqCst fence, looks again, and waits on a latched doorbell; the other side, after
//! publishing, makes a SeqCst fence and rings the doorbell if its peer announced sleep.
//!
//! The ring is written once (`producer`, `consumer`) against `RingMem`, which both back ends
//! implement: simkit (a `Region`, `Ctx::fence`, `Notify`) and shuttle (its atomics, `fence`, and
//! a mutex and condition variable). Every method is one scheduling point on both. Each run is a
//! fresh seed; the figure is runs per wall second.
//!
//! `cargo bench -p simkit --bench spsc_ring [-- RUNS]` (default 20000 runs per row). Each row
//! is timed three times and the best kept: on a shared machine the slowest timings measure the
//! neighbours.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

const CAP: u32 = 4;
const TOTAL: u32 = 8;
const CHUNK: u32 = 3;

/// The ring's control words.
#[derive(Clone, Copy)]
enum Word {
    Head = 0,
    Tail = 1,
    Closed = 2,
    ConsSleeps = 3,
    ProdSleeps = 4,
}

#[derive(Clone, Copy)]
enum Bell {
    Consumer = 0,
    Producer = 1,
}

/// What the ring needs of a back end. Each method is one scheduling point.
trait RingMem {
    fn load(&self, w: Word, o: Ordering) -> impl Future<Output = u32>;
    fn store(&self, w: Word, v: u32, o: Ordering) -> impl Future<Output = ()>;
    fn fence(&self) -> impl Future<Output = ()>;
    /// Plain copy into the data area at `at` (no wrap).
    fn write_data(&self, at: u32, data: &[u8]) -> impl Future<Output = ()>;
    /// Plain copy out of the data area at `at` (no wrap).
    fn read_data(&self, at: u32, buf: &mut [u8]) -> impl Future<Output = ()>;
    /// Latched doorbell: a ring with nobody waiting is kept for the next wait.
    fn ring(&self, b: Bell) -> impl Future<Output = ()>;
    fn wait(&self, b: Bell) -> impl Future<Output = ()>;
}

/// Wakes the peer if it announced sleep (after a SeqCst fence that orders our publication).
async fn kick<M: RingMem>(m: &M, flag: Word, bell: Bell) {
    m.fence().await;
    if m.load(flag, Ordering::Relaxed).await == 1 {
        m.store(flag, 0, Ordering::Relaxed).await;
        m.ring(bell).await;
    }
}

async fn producer<M: RingMem>(m: &M) {
    let mut head = 0u32;
    let mut sent = 0u32;
    while sent < TOTAL {
        let want = CHUNK.min(TOTAL - sent);
        let free = loop {
            let tail = m.load(Word::Tail, Ordering::Acquire).await;
            let free = CAP - head.wrapping_sub(tail);
            if free > 0 {
                break free;
            }
            m.store(Word::ProdSleeps, 1, Ordering::SeqCst).await;
            m.fence().await;
            let tail = m.load(Word::Tail, Ordering::Acquire).await;
            if CAP - head.wrapping_sub(tail) > 0 {
                m.store(Word::ProdSleeps, 0, Ordering::Relaxed).await;
                continue;
            }
            m.wait(Bell::Producer).await;
        };
        let n = want.min(free);
        let bytes: Vec<u8> = (sent..sent + n).map(|b| b as u8).collect();
        let at = head % CAP;
        let first = n.min(CAP - at);
        m.write_data(at, &bytes[..first as usize]).await;
        if first < n {
            m.write_data(0, &bytes[first as usize..]).await;
        }
        head = head.wrapping_add(n);
        sent += n;
        m.store(Word::Head, head, Ordering::Release).await;
        kick(m, Word::ConsSleeps, Bell::Consumer).await;
    }
    m.store(Word::Closed, 1, Ordering::Release).await;
    kick(m, Word::ConsSleeps, Bell::Consumer).await;
}

async fn consumer<M: RingMem>(m: &M) {
    let mut tail = 0u32;
    let mut got = Vec::new();
    loop {
        let head = m.load(Word::Head, Ordering::Acquire).await;
        if head != tail {
            let n = head.wrapping_sub(tail);
            let at = tail % CAP;
            let first = n.min(CAP - at);
            let mut buf = [0u8; CAP as usize];
            m.read_data(at, &mut buf[..first as usize]).await;
            if first < n {
                m.read_data(0, &mut buf[first as usize..n as usize]).await;
            }
            got.extend_from_slice(&buf[..n as usize]);
            tail = tail.wrapping_add(n);
            m.store(Word::Tail, tail, Ordering::Release).await;
            kick(m, Word::ProdSleeps, Bell::Producer).await;
            continue;
        }
        if m.load(Word::Closed, Ordering::Acquire).await == 1 {
            if m.load(Word::Head, Ordering::Acquire).await == tail {
                break;
            }
            continue;
        }
        m.store(Word::ConsSleeps, 1, Ordering::SeqCst).await;
        m.fence().await;
        if m.load(Word::Head, Ordering::Acquire).await != tail
            || m.load(Word::Closed, Ordering::Acquire).await == 1
        {
            m.store(Word::ConsSleeps, 0, Ordering::Relaxed).await;
            continue;
        }
        m.wait(Bell::Consumer).await;
    }
    let want: Vec<u8> = (0..TOTAL).map(|b| b as u8).collect();
    assert_eq!(got, want, "the consumer read a different stream");
}

mod on_simkit {
    use super::*;
    use simkit::{DecisionSource, KernelOptions, MemMode, Notify, Region, Sim, StrategyKind};

    const DATA: u64 = 32;

    struct Mem {
        region: Region,
        bells: [Notify; 2],
    }

    impl RingMem for Mem {
        async fn load(&self, w: Word, o: Ordering) -> u32 {
            self.region
                .load_u32(w as u64 * 4, o)
                .await
                .expect("in bounds")
        }
        async fn store(&self, w: Word, v: u32, o: Ordering) {
            self.region
                .store_u32(w as u64 * 4, v, o)
                .await
                .expect("in bounds");
        }
        async fn fence(&self) {
            self.region.fence(Ordering::SeqCst).await;
        }
        async fn write_data(&self, at: u32, data: &[u8]) {
            self.region
                .write_bytes(DATA + u64::from(at), data)
                .await
                .expect("in bounds");
        }
        async fn read_data(&self, at: u32, buf: &mut [u8]) {
            self.region
                .read_bytes(DATA + u64::from(at), buf)
                .await
                .expect("in bounds");
        }
        async fn ring(&self, b: Bell) {
            self.bells[b as usize].notify().await;
        }
        async fn wait(&self, b: Bell) {
            self.bells[b as usize].wait().await;
        }
    }

    /// One run; returns its scheduling steps, or panics if the ring went wrong.
    pub fn run_one(seed: u64, mode: MemMode, strategy: &StrategyKind) -> u64 {
        let mut sim = Sim::new(
            DecisionSource::seeded(seed),
            strategy.build(),
            mode,
            KernelOptions::default(),
        );
        let ctx = sim.ctx();
        let region = sim.alloc_region("ring", DATA + u64::from(CAP));
        let mem = std::rc::Rc::new(Mem {
            region,
            bells: [Notify::new(&ctx, "cons"), Notify::new(&ctx, "prod")],
        });
        let m = mem.clone();
        sim.spawn("producer", async move { producer(&*m).await });
        let m = mem;
        sim.spawn("consumer", async move { consumer(&*m).await });
        let out = sim.run();
        assert!(
            out.panics.is_empty() && out.unfinished.is_empty() && out.lost_wakeups.is_empty(),
            "seed {seed} {mode}: {out:?}"
        );
        out.steps
    }
}

mod on_shuttle {
    use super::*;
    use shuttle::scheduler::{PctScheduler, RandomScheduler};
    use shuttle::sync::atomic::{AtomicU8, AtomicU32, fence};
    use shuttle::sync::{Arc, Condvar, Mutex};
    use shuttle::{Config, Runner};

    struct Mem {
        words: [AtomicU32; 5],
        /// The data area: copied under a plain (non-shuttle) lock, after one shuttle atomic
        /// access (`gate`) that makes the copy a scheduling point, as on simkit.
        data: std::sync::Mutex<[u8; CAP as usize]>,
        gate: AtomicU8,
        bells: [(Mutex<bool>, Condvar); 2],
    }

    impl RingMem for Mem {
        async fn load(&self, w: Word, o: Ordering) -> u32 {
            self.words[w as usize].load(o)
        }
        async fn store(&self, w: Word, v: u32, o: Ordering) {
            self.words[w as usize].store(v, o);
        }
        async fn fence(&self) {
            fence(Ordering::SeqCst);
        }
        async fn write_data(&self, at: u32, src: &[u8]) {
            self.gate.load(Ordering::Relaxed);
            let mut d = self.data.lock().expect("not poisoned");
            d[at as usize..at as usize + src.len()].copy_from_slice(src);
        }
        async fn read_data(&self, at: u32, buf: &mut [u8]) {
            self.gate.load(Ordering::Relaxed);
            let d = self.data.lock().expect("not poisoned");
            buf.copy_from_slice(&d[at as usize..at as usize + buf.len()]);
        }
        async fn ring(&self, b: Bell) {
            let (lock, cv) = &self.bells[b as usize];
            *lock.lock().expect("not poisoned") = true;
            cv.notify_one();
        }
        async fn wait(&self, b: Bell) {
            let (lock, cv) = &self.bells[b as usize];
            let mut rung = lock.lock().expect("not poisoned");
            while !*rung {
                rung = cv.wait(rung).expect("not poisoned");
            }
            *rung = false;
        }
    }

    fn body() {
        let mem = Arc::new(Mem {
            words: std::array::from_fn(|_| AtomicU32::new(0)),
            data: std::sync::Mutex::new([0; CAP as usize]),
            gate: AtomicU8::new(0),
            bells: std::array::from_fn(|_| (Mutex::new(false), Condvar::new())),
        });
        let m = mem.clone();
        let p = shuttle::thread::spawn(move || now(producer(&*m)));
        let c = shuttle::thread::spawn(move || now(consumer(&*mem)));
        p.join().expect("producer");
        c.join().expect("consumer");
    }

    /// Runs `runs` executions; `pct` is Some(depth) for PCT.
    pub fn run(runs: usize, seed: u64, pct: Option<usize>) -> usize {
        let config = Config::default();
        match pct {
            None => Runner::new(RandomScheduler::new_from_seed(seed, runs), config).run(body),
            Some(d) => Runner::new(PctScheduler::new_from_seed(seed, d, runs), config).run(body),
        }
    }
}

/// Polls a future that never waits (shuttle's operations block the calling shuttle thread).
fn now<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("shuttle operations complete before they return"),
    }
}

fn main() {
    use simkit::{MemMode, StrategyKind};
    let runs: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    // PCT's k for simkit: the mean steps of a run, measured under the random walk.
    let mean_steps = {
        let n = 1000;
        (0..n)
            .map(|s| on_simkit::run_one(s, MemMode::Tso, &StrategyKind::Random))
            .sum::<u64>()
            / n
    };
    let time = |f: &mut dyn FnMut()| {
        (0..3)
            .map(|_| {
                let t = Instant::now(); // determinism-ok: a benchmark times wall-clock runs/s, outside any simulated run
                f();
                runs as f64 / t.elapsed().as_secs_f64()
            })
            .fold(0.0, f64::max)
    };
    let shuttle_random = time(&mut || {
        assert_eq!(on_shuttle::run(runs as usize, 1, None), runs as usize);
    });
    let shuttle_pct = time(&mut || {
        assert_eq!(on_shuttle::run(runs as usize, 1, Some(3)), runs as usize);
    });
    println!("SPSC ring, {runs} runs per row, best of 3, one core (simkit PCT k = {mean_steps})\n");
    println!(
        "| back end | mem | strategy | runs/s | vs shuttle random | vs shuttle same strategy |"
    );
    println!("|---|---|---|---:|---:|---:|");
    println!("| shuttle 0.9.9 | sc | random | {shuttle_random:.0} | 1.00x | 1.00x |");
    println!(
        "| shuttle 0.9.9 | sc | pct d=3 | {shuttle_pct:.0} | {:.2}x | 1.00x |",
        shuttle_pct / shuttle_random
    );
    for (label, strategy, base) in [
        ("random", StrategyKind::Random, shuttle_random),
        (
            "pct d=3",
            StrategyKind::Pct {
                depth: 3,
                steps: mean_steps,
            },
            shuttle_pct,
        ),
    ] {
        for mode in MemMode::ALL {
            let rate = time(&mut || {
                for seed in 0..runs {
                    on_simkit::run_one(seed, mode, &strategy);
                }
            });
            println!(
                "| simkit | {mode} | {label} | {rate:.0} | {:.2}x | {:.2}x |",
                rate / shuttle_random,
                rate / base
            );
        }
    }
}
