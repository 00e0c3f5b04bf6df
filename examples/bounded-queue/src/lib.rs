//! An example from outside the project's catalogue, on the public API only: a bounded
//! shared-memory queue ([`queue`]), its scenario and oracle ([`QueueScenario`]), two planted
//! bugs, and a catalogue handed to `sim` (`src/main.rs`: `cargo run -p bounded-queue -- --seed 1`).
//! `docs/writing-a-scenario.md` walks through it.

pub mod queue;

use harness::{Catalogue, PlantedBug, Scenario, Setup, Violation};
use queue::{Flaws, Queue};
use simkit::{MemMode, Region};
use std::cell::RefCell;
use std::rc::Rc;

const RELAXED_PUBLISH: &str = "queue-relaxed-publish";
const NO_RECHECK: &str = "queue-no-recheck";

static BUGS: &[PlantedBug] = &[
    PlantedBug {
        name: RELAXED_PUBLISH,
        scenario: "bounded-queue",
        description: "the producer publishes tail with a relaxed store, so a slot may be read before it is written",
        mirrors: "cursor published before data: rust-embedded/heapless#5",
        needs_mem: Some(MemMode::Relaxed),
    },
    PlantedBug {
        name: NO_RECHECK,
        scenario: "bounded-queue",
        description: "the consumer parks without re-checking tail after announcing that it sleeps",
        mirrors: "check-then-sleep lost wake-up: acrn-hypervisor#2623",
        needs_mem: None,
    },
];

/// A producer sends 4..=24 items through a four-slot queue to a sleeping consumer.
///
/// Oracles: the consumer gets every item once, in order (conservation against the producer's
/// own list); the harness adds liveness (no lost wake-up, no deadlock, no panic).
pub struct QueueScenario;

impl Scenario for QueueScenario {
    fn name(&self) -> &'static str {
        "bounded-queue"
    }

    fn description(&self) -> &'static str {
        "a producer and a sleeping consumer share a four-slot queue in shared memory"
    }

    fn expected_steps(&self) -> u64 {
        300
    }

    fn bugs(&self) -> &'static [PlantedBug] {
        BUGS
    }

    fn run(&self, setup: &mut Setup) -> Vec<Violation> {
        let items = setup.derive("items", 4, 24);
        let key = setup.derive("key", 1, u64::from(u32::MAX));
        let flaws = Flaws {
            relaxed_publish: setup.planted(RELAXED_PUBLISH),
            no_recheck: setup.planted(NO_RECHECK),
        };
        let memory = setup.sim.alloc_region("queue", queue::BYTES);
        let ctx = setup.ctx();
        let queue = match Queue::new(&ctx, &memory, flaws) {
            Ok(q) => q,
            Err(e) => return vec![Violation::new("setup", e.to_string())],
        };
        let sent: Vec<u64> = (0..items).map(|i| key.rotate_left(i as u32) ^ i).collect();
        let received: Rc<RefCell<Vec<u64>>> = Rc::default();
        let errors: Rc<RefCell<Vec<String>>> = Rc::default();
        let (q, c, s, e) = (queue.clone(), ctx.clone(), sent.clone(), errors.clone());
        setup.sim.spawn("producer", async move {
            for item in s {
                if let Err(err) = q.push(&c, item).await {
                    e.borrow_mut().push(format!("producer: {err}"));
                }
            }
        });
        let (q, c, r, e) = (queue, ctx, received.clone(), errors.clone());
        setup.sim.spawn("consumer", async move {
            for _ in 0..items {
                match q.pop(&c).await {
                    Ok(item) => r.borrow_mut().push(item),
                    Err(err) => e.borrow_mut().push(format!("consumer: {err}")),
                }
            }
        });
        setup.run();
        let mut v: Vec<Violation> = errors
            .borrow()
            .iter()
            .map(|e| Violation::new("memory-bounds", e.clone()))
            .collect();
        let got = received.borrow();
        if *got != sent[..got.len()] {
            v.push(Violation::new(
                "conservation",
                format!("sent {sent:?}, received {:?}", *got),
            ));
        }
        v
    }
}

static QUEUE: QueueScenario = QueueScenario;

/// This crate's catalogue.
pub fn catalogue() -> Catalogue {
    Catalogue::new(vec![&QUEUE])
}

/// Memory for a queue, for tests that drive [`Queue`] by hand.
pub fn queue_memory(ctx: &simkit::Ctx) -> Region {
    Region::alloc(ctx, "queue", queue::BYTES)
}
