//! A thread that runs seed after seed reuses the memory model's allocations (bytes, store
//! buffers, history pages, actor views). A run on reused allocations must be the same run as on
//! fresh ones: the same trace, line for line, and the same hash.

use simkit::{
    DecisionSource, KernelOptions, MemMode, Ordering, RmwOp, Sim, StrategyKind, clear_spares,
};

/// A run with `actors` actors over `len` bytes: release/acquire and relaxed atomics, SeqCst
/// fences, an RMW and plain copies, spread over several history pages.
fn run(seed: u64, mode: MemMode, actors: u64, len: u64) -> (u64, Vec<String>) {
    let opts = KernelOptions {
        capture_trace: true,
        ..KernelOptions::default()
    };
    let mut s = Sim::new(
        DecisionSource::seeded(seed),
        StrategyKind::Random.build(),
        mode,
        opts,
    );
    let r = s.alloc_region("shm", len);
    for a in 0..actors {
        let r = r.clone();
        s.spawn(&format!("a{a}"), async move {
            let mine = (a * 72) % (len - 8);
            let other = ((a + 1) * 72) % (len - 8);
            for i in 0..4u64 {
                r.write_bytes(mine, &[a as u8, i as u8, 7])
                    .await
                    .expect("in bounds");
                r.store(mine, 4, i, Ordering::Release)
                    .await
                    .expect("in bounds");
                r.fence(Ordering::SeqCst).await;
                let seen = r
                    .load(other, 4, Ordering::Acquire)
                    .await
                    .expect("in bounds");
                r.rmw(0, 8, RmwOp::Add(seen + 1), Ordering::AcqRel)
                    .await
                    .expect("in bounds");
                let mut buf = [0u8; 3];
                r.read_bytes(other, &mut buf).await.expect("in bounds");
                r.load(mine, 4, Ordering::Relaxed).await.expect("in bounds");
            }
        });
    }
    s.run();
    (s.trace_hash(), s.take_trace_lines().expect("captured"))
}

#[test]
fn a_reused_worker_gives_the_same_traces_as_a_fresh_one() {
    for mode in MemMode::ALL {
        for seed in 0..12 {
            clear_spares();
            let fresh = run(seed, mode, 3, 200);
            // Dirty the spares with a larger run (more actors, more pages) first.
            clear_spares();
            run(seed + 100, mode, 6, 600);
            run(seed + 200, MemMode::Relaxed, 5, 400);
            let reused = run(seed, mode, 3, 200);
            assert_eq!(fresh.1, reused.1, "{mode} seed {seed}: lines differ");
            assert_eq!(fresh.0, reused.0, "{mode} seed {seed}: hash differs");
        }
    }
}
