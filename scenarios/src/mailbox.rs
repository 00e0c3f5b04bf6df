//! `mailbox` (the default scenario): a producer hands messages to a consumer through a one-slot
//! mailbox in shared memory, the way a guest kernel and a host monitor share a ring.
//!
//! Protocol. The producer writes the payload (plain copy), publishes `seq` with a release store,
//! then checks `waiting` after a SeqCst fence and rings the consumer's doorbell if it is set. The
//! consumer reads while `seq` moves; when it finds nothing it sets `waiting`, fences (SeqCst),
//! re-checks, and only then parks on the doorbell. That fence pair is a Dekker handshake: with a
//! weaker fence both sides can read the other's old value (store buffering) and the consumer
//! sleeps forever. The consumer acknowledges each message by a release store of `ack` and rings
//! the producer's doorbell; the producer checks `ack` and parks on that doorbell before reusing
//! the slot.
//!
//! Derived per seed: the number of messages and the payload key. Faults: scheduling, store-buffer
//! drains, doorbell latency and spurious wake-ups, buggified producer delays.
//!
//! Oracles: conservation (every message delivered once, in order, intact, against the workload's
//! own list of what was sent) and liveness (no lost wake-up at quiescence, no deadlock, no panic).

use crate::{PlantedBug, Scenario, Setup, Violation};
use hv::sim::{SimIrqLine, SimVm, planted as hv_planted};
use hv::{IrqRaiser, IrqWaiter};
use simkit::{MemMode, Ordering, Region};
use std::cell::RefCell;
use std::rc::Rc;

pub struct Mailbox;

const SEQ: u64 = 0;
const ACK: u64 = 8;
const WAITING: u64 = 16;
const PAYLOAD: u64 = 24;
const PAYLOAD_LEN: usize = 24;

const LOST_WAKEUP: &str = "mailbox-lost-wakeup";
const WEAK_FENCE: &str = "mailbox-acqrel-fence";
const RELAXED_PUBLISH: &str = "mailbox-relaxed-publish";

static BUGS: &[PlantedBug] = &[
    PlantedBug {
        name: LOST_WAKEUP,
        scenario: "mailbox",
        description: "the consumer's wait-for-interrupt forgets a ring that landed between its check and its halt",
        mirrors: "check-then-sleep lost wake-up: Arca kthread::wfi checks INTERRUPTED only after hlt; acrn-hypervisor#2623, hermit-os/kernel#2669",
        needs_mem: None,
    },
    PlantedBug {
        name: WEAK_FENCE,
        scenario: "mailbox",
        description: "notification suppression uses AcqRel fences where the Dekker handshake needs SeqCst",
        mirrors: "rust-vmm/vm-virtio#18 (\"needs to be SeqCst not AcqRel\"), axboe/liburing#541, cloud-hypervisor#2179",
        needs_mem: None,
    },
    PlantedBug {
        name: RELAXED_PUBLISH,
        scenario: "mailbox",
        description: "seq is published with a relaxed store, so the payload may not be visible when seq is",
        mirrors: "cursor published before data: rust-embedded/heapless#5, eclipse-iceoryx/iceoryx2#119",
        needs_mem: Some(MemMode::Relaxed),
    },
];

/// The workload's message `i` for a given key: what the producer sends and the oracle expects.
fn payload(key: u64, i: u64) -> Vec<u8> {
    (0..PAYLOAD_LEN as u64)
        .map(|j| (key.rotate_left((i * 7 + j) as u32) ^ (i * 31 + j)) as u8)
        .collect()
}

impl Scenario for Mailbox {
    fn name(&self) -> &'static str {
        "mailbox"
    }

    fn description(&self) -> &'static str {
        "producer and consumer share a one-slot mailbox: release/acquire publish, Dekker-style notification suppression, interrupt-line doorbells"
    }

    fn expected_steps(&self) -> u64 {
        150
    }

    fn bugs(&self) -> &'static [PlantedBug] {
        BUGS
    }

    fn kernel_options(&self) -> simkit::KernelOptions {
        // A healthy run takes a few hundred steps and tens of microseconds of virtual time.
        simkit::KernelOptions {
            buggify: true,
            max_steps: 100_000,
            time_limit_ns: 10_000_000,
            ..Default::default()
        }
    }

    fn run(&self, setup: &mut Setup) -> Vec<Violation> {
        let messages = setup.derive("messages", 3, 12);
        let key = setup.derive("payload_key", 0, u64::from(u32::MAX));
        let fence = if setup.planted(WEAK_FENCE) {
            Ordering::AcqRel
        } else {
            Ordering::SeqCst
        };
        let publish = if setup.planted(RELAXED_PUBLISH) {
            Ordering::Relaxed
        } else {
            Ordering::Release
        };
        let mbox = setup.sim.alloc_region("mbox", PAYLOAD + PAYLOAD_LEN as u64);
        for (offset, len, name) in [
            (SEQ, 8, "seq"),
            (ACK, 8, "ack"),
            (WAITING, 8, "waiting"),
            (PAYLOAD, PAYLOAD_LEN as u64, "payload"),
        ] {
            mbox.name_field(offset, len, name);
        }
        // The two doorbells are interrupt lines of the simulated VM (latency, spurious wake-ups).
        // A halting vCPU takes an interrupt within 100-300 ns, which keeps the check-to-halt
        // window of the lost wake-up reachable (1 µs hides it: 0 of 10,000 seeds).
        let vm = SimVm::new(setup.ctx(), 100);
        if setup.planted(LOST_WAKEUP) {
            vm.plant_irq_bugs(hv_planted::WFI_LOST_WAKEUP);
        }
        let (bell, ack_bell) = (vm.irq_line(1), vm.irq_line(2));
        let received: Received = Rc::default();
        let errors: Rc<RefCell<Vec<String>>> = Rc::default();

        let (m, ctx, bells, errs) = (
            mbox.clone(),
            setup.ctx(),
            (bell.clone(), ack_bell.clone()),
            errors.clone(),
        );
        setup.sim.spawn("producer", async move {
            if let Err(e) = produce(&m, &ctx, &bells, messages, key, fence, publish).await {
                errs.borrow_mut().push(format!("producer: {e}"));
            }
        });
        let (m, ctx, got, errs) = (mbox.clone(), setup.ctx(), received.clone(), errors.clone());
        setup.sim.spawn("consumer", async move {
            if let Err(e) = consume(&m, &ctx, &(bell, ack_bell), messages, fence, &got).await {
                errs.borrow_mut().push(format!("consumer: {e}"));
            }
        });

        setup.run();
        let sent: Vec<Vec<u8>> = (0..messages).map(|i| payload(key, i)).collect();
        let (got, at): (Vec<Vec<u8>>, Vec<simkit::At>) = received.borrow().iter().cloned().unzip();
        let mut v: Vec<Violation> = Vec::new();
        v.extend(models::conservation::check_received(&sent, &got, &at));
        v.extend(
            errors
                .borrow()
                .iter()
                .map(|e| Violation::new("memory-bounds", e.clone())),
        );
        v
    }
}

/// A mailbox's two doorbells: into the consumer, and back to the producer.
type Bells = (SimIrqLine, SimIrqLine);

/// What the consumer received, and where in the run (so a corrupted message points there).
type Received = Rc<RefCell<Vec<(Vec<u8>, simkit::At)>>>;

/// Judged from outside: the committed word at `addr` is above what `floor` says was consumed.
fn committed_above(addr: u64, floor: impl Fn() -> u64 + 'static) -> simkit::WaitCondition {
    Rc::new(move |mem: &simkit::Memory| {
        mem.committed(addr, 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) > floor())
            .unwrap_or(false)
    })
}

async fn produce(
    m: &Region,
    ctx: &simkit::Ctx,
    (bell, ack_bell): &Bells,
    messages: u64,
    key: u64,
    fence: Ordering,
    publish: Ordering,
) -> Result<(), simkit::MemError> {
    for i in 0..messages {
        loop {
            // The ticket comes before the check, so an ack rung in between is not lost.
            let ticket = ack_bell.ticket();
            if m.load_u64(ACK, Ordering::Acquire).await? >= i {
                break;
            }
            let _parked = ctx.park_guard(
                "slot acknowledged",
                committed_above(m.base() + ACK, move || i.saturating_sub(1)),
            );
            ack_bell.wait(ticket).await;
        }
        if ctx.buggify() {
            ctx.sleep(ctx.choose(5_000)).await;
        }
        m.write_bytes(PAYLOAD, &payload(key, i)).await?;
        m.store_u64(SEQ, i + 1, publish).await?;
        ctx.fence(fence).await;
        if m.load_u64(WAITING, Ordering::Relaxed).await? == 1 {
            bell.raise();
        }
        ctx.progress();
    }
    Ok(())
}

async fn consume(
    m: &Region,
    ctx: &simkit::Ctx,
    (bell, ack_bell): &Bells,
    messages: u64,
    fence: Ordering,
    received: &Received,
) -> Result<(), simkit::MemError> {
    let mut last = 0;
    while last < messages {
        let seq = m.load_u64(SEQ, Ordering::Acquire).await?;
        if seq > last {
            let mut buf = [0u8; PAYLOAD_LEN];
            m.read_bytes(PAYLOAD, &mut buf).await?;
            let here = ctx.with(|k| k.position());
            received.borrow_mut().push((buf.to_vec(), here));
            last += 1;
            m.store_u64(ACK, last, Ordering::Release).await?;
            ack_bell.raise();
            ctx.progress();
            continue;
        }
        let ticket = bell.ticket();
        m.store_u64(WAITING, 1, Ordering::Relaxed).await?;
        ctx.fence(fence).await;
        if m.load_u64(SEQ, Ordering::Acquire).await? > last {
            m.store_u64(WAITING, 0, Ordering::Relaxed).await?;
            continue;
        }
        {
            // Committed `seq` ahead of what was observably delivered.
            let got = received.clone();
            let unread = committed_above(m.base() + SEQ, move || got.borrow().len() as u64);
            let _parked = ctx.park_guard("mailbox holds an unread message", unread);
            bell.wait(ticket).await;
        }
        m.store_u64(WAITING, 0, Ordering::Relaxed).await?;
    }
    Ok(())
}
