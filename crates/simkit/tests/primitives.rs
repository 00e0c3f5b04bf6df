//! The primitives a component written on the kernel uses: typed atomics, park and unpark, a
//! lock, and memory allocated while the world runs. Each carries the memory model's
//! happens-before: checked over many seeds under `relaxed`, where nothing else orders.

use simkit::{
    AtomicBool, AtomicU8, AtomicU32, AtomicU64, DecisionSource, KernelOptions, MemMode, Mutex,
    Notify, Ordering, Region, RunOutcome, Sim, StrategyKind,
};
use std::cell::Cell;
use std::rc::Rc;

fn sim(seed: u64, mode: MemMode) -> Sim {
    Sim::new(
        DecisionSource::seeded(seed),
        StrategyKind::Random.build(),
        mode,
        KernelOptions::default(),
    )
}

#[test]
fn typed_atomics_read_modify_write_and_report_committed_values() {
    let mut s = sim(1, MemMode::Tso);
    let r = s.alloc_region("fields", 16);
    let (a, b, c, d) = (
        AtomicU64::at(&r, 0).expect("in bounds"),
        AtomicU32::at(&r, 8).expect("in bounds"),
        AtomicU8::at(&r, 12).expect("in bounds"),
        AtomicBool::at(&r, 13).expect("in bounds"),
    );
    assert!(
        AtomicU64::at(&r, 9).is_err(),
        "a field past the region's end"
    );
    for name in ["x", "y"] {
        let (a, b, c, d) = (a.clone(), b.clone(), c.clone(), d.clone());
        s.spawn(name, async move {
            a.fetch_add(5, Ordering::SeqCst).await;
            b.fetch_sub(1, Ordering::SeqCst).await;
            c.fetch_or(0x81, Ordering::SeqCst).await;
            let _ = d
                .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
                .await;
        });
    }
    s.run();
    let ctx = s.ctx();
    ctx.peek(|m| {
        assert_eq!(a.committed(m), 10);
        assert_eq!(b.committed(m), u32::MAX - 1);
        assert_eq!(c.committed(m), 0x81);
        assert!(d.committed(m));
    });
}

/// Data written with plain relaxed stores before a `notify` is seen by the waiter after its
/// `wait`, at every seed; a relaxed flag instead of the notify does not give that.
#[test]
fn notify_carries_happens_before_under_relaxed() {
    let run = |seed: u64, use_notify: bool| -> bool {
        let mut s = sim(seed, MemMode::Relaxed);
        let r = s.alloc_region("box", 16);
        let data = AtomicU64::at(&r, 0).expect("in bounds");
        let flag = AtomicBool::at(&r, 8).expect("in bounds");
        let bell = Notify::new(&s.ctx(), "bell");
        let stale = Rc::new(Cell::new(false));
        let (d, f, b) = (data.clone(), flag.clone(), bell.clone());
        s.spawn("writer", async move {
            d.store(42, Ordering::Relaxed).await;
            if use_notify {
                b.notify().await;
            } else {
                f.store(true, Ordering::Relaxed).await;
            }
        });
        let (d, f, b, st) = (data, flag, bell, stale.clone());
        let ctx = s.ctx();
        s.spawn("reader", async move {
            if use_notify {
                b.wait().await;
            } else {
                while !f.load(Ordering::Relaxed).await {
                    ctx.yield_now().await;
                }
            }
            st.set(d.load(Ordering::Relaxed).await != 42);
        });
        s.run();
        stale.get()
    };
    assert!(
        (0..300).all(|seed| !run(seed, true)),
        "a notify lost its edge"
    );
    assert!(
        (0..300).any(|seed| run(seed, false)),
        "relaxed mode never showed a stale read without the edge (the check would be vacuous)"
    );
}

/// Two actors add to a plain (relaxed) counter under the lock: no update is lost.
#[test]
fn mutex_excludes_and_orders() {
    for seed in 0..200 {
        let mut s = sim(seed, MemMode::Relaxed);
        let r = s.alloc_region("counter", 8);
        let counter = AtomicU64::at(&r, 0).expect("in bounds");
        let lock = Mutex::new(&s.ctx(), "lock", ());
        for name in ["a", "b", "c"] {
            let (c, l) = (counter.clone(), lock.clone());
            s.spawn(name, async move {
                for _ in 0..3 {
                    let _held = l.lock().await;
                    let v = c.load(Ordering::Relaxed).await;
                    c.store(v + 1, Ordering::Relaxed).await;
                }
            });
        }
        let out = s.run();
        assert!(out.liveness_failures().is_empty(), "{out:?}");
        assert_eq!(s.ctx().peek(|m| counter.committed(m)), 9, "seed {seed}");
    }
}

/// A waiter that parks while its declared condition already holds, and is never notified, is a
/// lost wake-up the liveness oracle reports.
#[test]
fn wait_guarded_reports_a_lost_wakeup() {
    let mut s = sim(3, MemMode::Tso);
    let r = s.alloc_region("ready", 1);
    let ready = AtomicBool::at(&r, 0).expect("in bounds");
    let bell = Notify::new(&s.ctx(), "bell");
    let rd = ready.clone();
    s.spawn("setter", async move {
        // Sets the flag but forgets to ring.
        rd.store(true, Ordering::SeqCst).await;
    });
    let ctx = s.ctx();
    s.spawn("waiter", async move {
        ctx.sleep(10_000).await;
        bell.wait_guarded("waiter", move |m| ready.committed(m))
            .await;
    });
    let out: RunOutcome = s.run();
    let failures = out.liveness_failures();
    assert!(
        failures.iter().any(|f| f.contains("waiter")),
        "{failures:?}"
    );
}

/// Memory allocated by an actor while the world runs is usable at once.
#[test]
fn memory_allocated_during_a_run() {
    let mut s = sim(4, MemMode::Tso);
    let ctx = s.ctx();
    let seen = Rc::new(Cell::new(0));
    let sn = seen.clone();
    s.spawn("mapper", async move {
        let page = Region::alloc(&ctx, "page", 4096);
        let word = AtomicU64::at(&page, 4088).expect("in bounds");
        word.store(7, Ordering::Release).await;
        sn.set(word.load(Ordering::Acquire).await);
    });
    s.run();
    assert_eq!(seen.get(), 7);
}
