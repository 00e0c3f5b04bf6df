//! The simulation binding of the hypervisor seam, seen from guest and host actors.

use hv::sim::{SimShm, SimVm};
use hv::{Doorbell, EventWaiter, Hypercalls, IrqRaiser, IrqWaiter, VmControl};
use ring_pipe::{Consumer, HEADER_LEN, Producer, RingError, RingLayout};
use simkit::{DecisionSource, EndReason, KernelOptions, MemMode, Sim, StrategyKind};
use std::cell::RefCell;
use std::rc::Rc;

fn sim(seed: u64, mode: MemMode) -> Sim {
    // No buggify: these tests pin down the plain semantics.
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
fn eventfd_rings_coalesce_into_one_wake() {
    let mut s = sim(1, MemMode::Sc);
    let vm = SimVm::new(s.ctx(), 1_000);
    let db = vm.doorbell(7);
    let got = Rc::new(RefCell::new(Vec::new()));
    let (ring_db, ctx) = (db.clone(), s.ctx());
    s.spawn("guest", async move {
        for _ in 0..3 {
            ring_db.ring();
        }
        ctx.sleep(100_000).await;
        ring_db.ring();
    });
    let (g, ctx) = (got.clone(), s.ctx());
    s.spawn("host", async move {
        ctx.sleep(50_000).await;
        for _ in 0..2 {
            let n = db.wait().await;
            g.borrow_mut().push(n);
        }
    });
    let out = s.run();
    assert!(out.unfinished.is_empty(), "{out:?}");
    assert_eq!(*got.borrow(), vec![3, 1]);
}

#[test]
fn irq_delivered_between_check_and_halt_is_not_lost() {
    for seed in 0..200 {
        let mut s = sim(seed, MemMode::Tso);
        let vm = SimVm::new(s.ctx(), 100);
        let line = vm.irq_line(2);
        let woke = Rc::new(RefCell::new(0));
        for t in 0..2 {
            let (line, woke) = (line.clone(), woke.clone());
            s.spawn(&format!("kthread{t}"), async move {
                let ticket = line.ticket();
                line.wait(ticket).await;
                *woke.borrow_mut() += 1;
            });
        }
        let l = line.clone();
        s.spawn("host", async move { l.raise() });
        let out = s.run();
        assert_eq!(
            *woke.borrow(),
            2,
            "seed {seed}: one shared interrupt must wake both threads: {out:?}"
        );
    }
}

#[cfg(feature = "planted-bugs")]
#[test]
fn planted_wfi_bug_loses_an_early_interrupt() {
    let mut lost = 0;
    for seed in 0..200 {
        let mut s = sim(seed, MemMode::Sc);
        let vm = SimVm::new(s.ctx(), 0);
        vm.plant_irq_bugs(hv::sim::planted::WFI_LOST_WAKEUP);
        let line = vm.irq_line(2);
        let (l, ctx) = (line.clone(), s.ctx());
        s.spawn("kthread", async move {
            let ticket = l.ticket();
            ctx.yield_now().await; // the "check" of the wake condition
            l.wait(ticket).await;
        });
        let l = line.clone();
        s.spawn("host", async move { l.raise() });
        lost += usize::from(!s.run().unfinished.is_empty());
    }
    assert!(
        lost > 0,
        "the planted bug never lost a wake-up in 200 seeds"
    );
}

#[test]
fn hypercalls_reach_the_handler_after_an_exit() {
    let mut s = sim(3, MemMode::Sc);
    let vm = SimVm::new(s.ctx(), 2_000);
    vm.set_hypercall_handler(Box::new(|nr, args| nr * 100 + args[0]));
    let result = Rc::new(RefCell::new(None));
    let (r, v, ctx) = (result.clone(), vm.clone(), s.ctx());
    s.spawn("guest", async move {
        let t0 = ctx.now();
        let value = v.call(4, [2, 0, 0, 0]).await;
        *r.borrow_mut() = Some((value, ctx.now() - t0));
    });
    s.run();
    let (value, took) = result.borrow().expect("returned");
    assert_eq!(value, 402);
    assert!(took >= 2_000, "exit latency {took}");
}

#[test]
fn pause_holds_the_vcpu_until_resume() {
    let mut s = sim(4, MemMode::Sc);
    let vm = SimVm::new(s.ctx(), 100);
    let ran_at = Rc::new(RefCell::new(0));
    let (v, r, ctx) = (vm.clone(), ran_at.clone(), s.ctx());
    vm.pause();
    s.spawn("vcpu", async move {
        v.wait_runnable().await;
        *r.borrow_mut() = ctx.now();
    });
    let (v, ctx) = (vm.clone(), s.ctx());
    s.spawn("host", async move {
        ctx.sleep(30_000).await;
        v.resume();
    });
    s.run();
    assert!(*ran_at.borrow() >= 30_000);
    assert!(!vm.is_paused());
}

/// A producer and a consumer actor move a byte stream through a ring in simulated shared memory,
/// sleeping with the suppression handshake and waking each other with a doorbell and an
/// interrupt line. Every byte arrives, in order, under every memory model.
fn ring_transfer(seed: u64, mode: MemMode, bugs: u32) -> (Vec<u8>, Vec<u8>, simkit::RunOutcome) {
    let mut s = sim(seed, mode);
    let cap = 64u64;
    let region = s.alloc_region("shm", HEADER_LEN + cap);
    let shm = SimShm::new(region);
    let layout = RingLayout::new(0, cap, HEADER_LEN + cap).expect("fits");
    let vm = SimVm::new(s.ctx(), 500);
    let data_ready = vm.doorbell(1); // producer (guest) -> consumer (host)
    let space_ready = vm.irq_line(1); // consumer (host) -> producer (guest)
    let sent: Vec<u8> = (0..700u32).map(|i| (i * 7 % 251) as u8).collect();
    let received = Rc::new(RefCell::new(Vec::new()));
    let init_shm = shm.clone();
    let start = u64::MAX - 100 - seed % 50;
    let (p_shm, p_data) = (shm.clone(), sent.clone());
    let (p_bell, p_irq) = (data_ready.clone(), space_ready.clone());
    let ready = vm.doorbell(2); // "the ring is initialised": the edge a control reply gives
    let ready_wait = ready.clone();
    s.spawn("producer", async move {
        layout.init(&init_shm, start).await.expect("init");
        ready.ring();
        let mut tx = Producer::attach(p_shm, layout)
            .await
            .expect("attach")
            .with_planted(bugs);
        let mut off = 0;
        while off < p_data.len() {
            let ticket = p_irq.ticket();
            match tx
                .try_write(&p_data[off..(off + 50).min(p_data.len())])
                .await
            {
                Ok(n) => {
                    off += n;
                    if tx.reader_wants_wake().await.expect("ok") {
                        p_bell.ring();
                    }
                }
                Err(RingError::WouldBlock) => {
                    if tx.prepare_wait().await.expect("ok") {
                        p_irq.wait(ticket).await;
                    }
                    tx.end_wait().await.expect("ok");
                }
                Err(e) => panic!("producer: {e}"),
            }
        }
        tx.close().await.expect("ok");
        p_bell.ring();
    });
    let (c_shm, got, c_irq, ctx) = (shm.clone(), received.clone(), space_ready.clone(), s.ctx());
    s.spawn("consumer", async move {
        // Attach only after the initialisation is published to us.
        while ready_wait.wait().await == 0 {}
        let _ = &ctx;
        let mut rx = Consumer::attach(c_shm, layout).await.expect("attach");
        // A read the size of the ring empties it in one go, so one missed wake-up check sticks.
        let mut buf = [0u8; 64];
        loop {
            match rx.try_read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    got.borrow_mut().extend_from_slice(&buf[..n]);
                    if rx.writer_wants_wake().await.expect("ok") {
                        c_irq.raise();
                    }
                }
                Err(RingError::WouldBlock) => {
                    if rx.prepare_wait().await.expect("ok") {
                        data_ready.wait().await;
                    }
                    rx.end_wait().await.expect("ok");
                }
                Err(e) => panic!("consumer: {e}"),
            }
        }
    });
    let out = s.run();
    let got = received.borrow().clone();
    (sent, got, out)
}

#[test]
fn ring_transfer_is_exact_under_every_memory_model() {
    for mode in MemMode::ALL {
        for seed in 0..60 {
            let (sent, got, out) = ring_transfer(seed, mode, 0);
            assert_eq!(out.end, EndReason::Quiescent, "{mode} seed {seed}");
            assert!(
                out.unfinished.is_empty() && out.panics.is_empty(),
                "{mode} seed {seed}: {out:?}"
            );
            assert_eq!(got, sent, "{mode} seed {seed}");
        }
    }
}

#[test]
fn missing_release_on_the_cursor_corrupts_data_under_relaxed_only() {
    let bug = ring_pipe::planted::PUBLISH_BEFORE_DATA;
    let corrupted = |mode| {
        (0..60)
            .filter(|s| ring_transfer(*s, mode, bug).1 != ring_transfer(*s, mode, 0).0)
            .count()
    };
    assert_eq!(corrupted(MemMode::Tso), 0, "x86 never reorders the stores");
    assert!(
        corrupted(MemMode::Relaxed) > 0,
        "the relaxed model must expose the missing release"
    );
}

#[test]
fn weak_suppression_fence_loses_a_wakeup_under_tso() {
    let bug = ring_pipe::planted::WEAK_SUPPRESSION_FENCE;
    let stuck = (0..1000)
        .filter(|s| !ring_transfer(*s, MemMode::Tso, bug).2.unfinished.is_empty())
        .count();
    assert!(
        stuck > 0,
        "AcqRel fences in the handshake must lose a wake-up under store buffering"
    );
    let stuck_sc = (0..300)
        .filter(|s| !ring_transfer(*s, MemMode::Sc, bug).2.unfinished.is_empty())
        .count();
    assert_eq!(stuck_sc, 0);
}
