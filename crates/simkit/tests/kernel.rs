//! Behaviour of the executor, clock, liveness detection and memory modes, seen from outside.

use simkit::{
    DecisionSource, EndReason, KernelOptions, MemMode, Ordering, RunOutcome, Sim, StrategyKind,
};
use std::cell::RefCell;
use std::rc::Rc;

fn sim(seed: u64, mode: MemMode) -> Sim {
    let opts = KernelOptions {
        capture_trace: true,
        ..KernelOptions::default()
    };
    Sim::new(
        DecisionSource::seeded(seed),
        StrategyKind::Random.build(),
        mode,
        opts,
    )
}

#[test]
fn timers_fire_in_virtual_time_order() {
    let mut s = sim(1, MemMode::Sc);
    let log = Rc::new(RefCell::new(Vec::new()));
    for (name, delay) in [("slow", 3_000u64), ("fast", 1_000), ("mid", 2_000)] {
        let ctx = s.ctx();
        let log = log.clone();
        s.spawn(name, async move {
            ctx.sleep(delay).await;
            log.borrow_mut().push((name, ctx.now()));
        });
    }
    let out = s.run();
    assert_eq!(out.end, EndReason::Quiescent);
    let log = log.borrow();
    assert_eq!(
        log.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        vec!["fast", "mid", "slow"]
    );
    // The clock jumps to each deadline (plus the step that polls the woken actor).
    assert!(log[0].1 >= 1_000 && log[0].1 < 2_000, "{log:?}");
    assert!(out.now_ns >= 3_000 && out.now_ns < 4_000);
}

#[test]
fn join_waits_for_spawned_child() {
    let mut s = sim(2, MemMode::Sc);
    let ctx = s.ctx();
    let order = Rc::new(RefCell::new(Vec::new()));
    let o = order.clone();
    s.spawn("parent", async move {
        let o2 = o.clone();
        let c2 = ctx.clone();
        let child = ctx.spawn("child", async move {
            c2.sleep(500).await;
            o2.borrow_mut().push("child");
        });
        ctx.join(child).await;
        o.borrow_mut().push("parent");
    });
    let out = s.run();
    assert!(out.unfinished.is_empty());
    assert_eq!(*order.borrow(), vec!["child", "parent"]);
}

#[test]
fn same_seed_same_trace_different_seed_different_interleaving() {
    let run = |seed| {
        let mut s = sim(seed, MemMode::Tso);
        let r = s.alloc_region("x", 8);
        for name in ["a", "b", "c"] {
            let r = r.clone();
            s.spawn(name, async move {
                for i in 0..20 {
                    r.rmw(0, 8, simkit::RmwOp::Add(i), Ordering::Relaxed)
                        .await
                        .expect("in bounds");
                }
            });
        }
        s.run();
        (s.trace_hash(), s.take_trace_lines().expect("captured"))
    };
    let (h1, l1) = run(7);
    let (h2, l2) = run(7);
    assert_eq!(h1, h2);
    assert_eq!(l1, l2);
    let distinct: std::collections::BTreeSet<u64> = (0..20).map(|s| run(s).0).collect();
    assert!(
        distinct.len() > 15,
        "only {} distinct interleavings",
        distinct.len()
    );
}

#[test]
fn lost_wakeup_is_reported_at_quiescence() {
    let mut s = sim(3, MemMode::Sc);
    let flag = s.alloc_region("flag", 8);
    let ctx = s.ctx();
    let f = flag.clone();
    s.spawn("sleeper", async move {
        // Parks forever on a condition that becomes true, and nobody wakes it.
        let _guard = ctx.park_guard(
            "flag set",
            Rc::new(move |m: &simkit::Memory| {
                m.committed(f.base(), 8).map(|b| b[0] != 0).unwrap_or(false)
            }),
        );
        std::future::pending::<()>().await;
    });
    let f = flag.clone();
    s.spawn("setter", async move {
        f.store_u64(0, 1, Ordering::SeqCst)
            .await
            .expect("in bounds");
    });
    let out: RunOutcome = s.run();
    assert_eq!(out.end, EndReason::Quiescent);
    assert_eq!(out.unfinished, vec!["sleeper".to_string()]);
    assert_eq!(out.lost_wakeups.len(), 1);
    assert!(
        out.liveness_failures()
            .iter()
            .any(|m| m.contains("lost wake-up"))
    );
}

#[test]
fn spinning_actor_exhausts_progress_budget() {
    let opts = KernelOptions {
        progress_budget: 500,
        ..KernelOptions::default()
    };
    let mut s = Sim::new(
        DecisionSource::seeded(4),
        StrategyKind::Random.build(),
        MemMode::Sc,
        opts,
    );
    let r = s.alloc_region("dead-peer", 8);
    s.spawn("spinner", async move {
        while r.load_u64(0, Ordering::Acquire).await.expect("in bounds") == 0 {}
    });
    let out = s.run();
    assert!(
        matches!(out.end, EndReason::NoProgress { ref actor, .. } if actor == "spinner"),
        "{:?}",
        out.end
    );
}

#[test]
fn panics_are_caught_and_reported() {
    let mut s = sim(5, MemMode::Sc);
    s.spawn("boom", async { panic!("kaboom") });
    let out = s.run();
    let panics: Vec<(String, String)> = out
        .panics
        .iter()
        .map(|p| (p.actor.clone(), p.message.clone()))
        .collect();
    assert_eq!(panics, vec![("boom".to_string(), "kaboom".to_string())]);
}

#[test]
fn out_of_bounds_is_a_typed_error() {
    let mut s = sim(6, MemMode::Tso);
    let r = s.alloc_region("small", 16);
    let result = Rc::new(RefCell::new(None));
    let res = result.clone();
    s.spawn("t", async move {
        *res.borrow_mut() = Some(r.load_u64(12, Ordering::Relaxed).await);
    });
    s.run();
    let err = result
        .borrow_mut()
        .take()
        .expect("ran")
        .expect_err("out of bounds");
    assert!(err.to_string().contains("outside"), "{err}");
}

#[test]
fn tso_forwards_own_stores_and_hides_them_from_others() {
    // With a replay schedule: a stores x=1 (buffered), a loads x (forwarded 1), b loads x (0),
    // then the drain, then b loads again (1).
    use simkit::{ActorId, Schedulable};
    let a = Schedulable::Actor(ActorId(0));
    let b = Schedulable::Actor(ActorId(1));
    let d = Schedulable::Drain(ActorId(0));
    let schedule = vec![a, a, a, b, b, d, b, b];
    let mut s = Sim::new(
        DecisionSource::seeded(0),
        StrategyKind::Replay { schedule }.build(),
        MemMode::Tso,
        KernelOptions {
            capture_trace: true,
            ..KernelOptions::default()
        },
    );
    let x = s.alloc_region("x", 8);
    let seen = Rc::new(RefCell::new(Vec::new()));
    let (xa, sa) = (x.clone(), seen.clone());
    s.spawn("a", async move {
        xa.store_u64(0, 1, Ordering::Relaxed).await.expect("ok");
        let v = xa.load_u64(0, Ordering::Relaxed).await.expect("ok");
        sa.borrow_mut().push(("a", v));
    });
    let (xb, sb) = (x.clone(), seen.clone());
    s.spawn("b", async move {
        let v1 = xb.load_u64(0, Ordering::Relaxed).await.expect("ok");
        let v2 = xb.load_u64(0, Ordering::Relaxed).await.expect("ok");
        sb.borrow_mut().extend([("b", v1), ("b", v2)]);
    });
    s.run();
    assert_eq!(
        *seen.borrow(),
        vec![("a", 1), ("b", 0), ("b", 1)],
        "{:#?}",
        s.take_trace_lines()
    );
}

#[test]
fn buffered_stores_drain_before_quiescence() {
    let mut s = sim(9, MemMode::Tso);
    let x = s.alloc_region("x", 8);
    let xa = x.clone();
    s.spawn("a", async move {
        xa.store_u64(0, 42, Ordering::Relaxed).await.expect("ok")
    });
    s.run();
    assert_eq!(x.peek_u64(0), Ok(42));
}

#[test]
fn stop_when_done_leaves_daemons_behind() {
    let mut s = sim(10, MemMode::Sc);
    s.stop_when_done(true);
    let ctx = s.ctx();
    let ticks = Rc::new(RefCell::new(0u32));
    let t = ticks.clone();
    s.spawn_daemon("heartbeat", async move {
        loop {
            ctx.sleep(1_000).await;
            *t.borrow_mut() += 1;
        }
    });
    let ctx = s.ctx();
    s.spawn("worker", async move { ctx.sleep(10_500).await });
    let out = s.run();
    assert_eq!(out.end, EndReason::AllFinished);
    assert!(out.unfinished.is_empty(), "daemons are not waited for");
    assert_eq!(*ticks.borrow(), 10);
}

#[test]
fn periodic_daemon_without_stop_hits_the_time_limit() {
    let opts = KernelOptions {
        time_limit_ns: 50_000,
        ..KernelOptions::default()
    };
    let mut s = Sim::new(
        DecisionSource::seeded(11),
        StrategyKind::Random.build(),
        MemMode::Sc,
        opts,
    );
    let ctx = s.ctx();
    s.spawn_daemon("heartbeat", async move {
        loop {
            ctx.sleep(1_000).await;
        }
    });
    let out = s.run();
    assert_eq!(out.end, EndReason::TimeLimit);
    assert_eq!(out.now_ns, 50_000);
}

#[test]
fn a_recorded_schedule_replays_the_run() {
    // Record the picks of a random run (sc: scheduling is the only choice), then follow them
    // with the replay strategy, which draws nothing: the same trace, no divergence.
    let build = |strategy: StrategyKind| {
        let opts = KernelOptions {
            capture_trace: true,
            record_schedule: true,
            ..KernelOptions::default()
        };
        let mut s = Sim::new(
            DecisionSource::seeded(21),
            strategy.build(),
            MemMode::Tso,
            opts,
        );
        let x = s.alloc_region("x", 8);
        for name in ["a", "b", "c"] {
            let x = x.clone();
            s.spawn(name, async move {
                for i in 0..5 {
                    x.store_u64(0, i, Ordering::Relaxed).await.expect("ok");
                    let _ = x.load_u64(0, Ordering::Relaxed).await.expect("ok");
                }
            });
        }
        s.run();
        s
    };
    let mut original = build(StrategyKind::Random);
    let schedule = original.schedule().to_vec();
    assert!(
        schedule
            .iter()
            .any(|p| matches!(p, simkit::Schedulable::Drain(_)))
    );
    let mut replayed = build(StrategyKind::Replay {
        schedule: schedule.clone(),
    });
    assert_eq!(replayed.trace_hash(), original.trace_hash());
    assert_eq!(replayed.take_trace_lines(), original.take_trace_lines());
    assert_eq!(replayed.schedule(), &schedule[..]);
}
