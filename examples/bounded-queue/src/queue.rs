//! The component: a bounded single-producer, single-consumer queue of `u64`s in shared memory,
//! with a sleeping consumer.
//!
//! Layout: `head` (the consumer's next slot), `tail` (the producer's next slot), `sleeping`
//! (the consumer is about to park or parked), then `SLOTS` slots. The producer writes a slot,
//! publishes `tail` with a release store, and after a SeqCst fence notifies the consumer if
//! `sleeping` is set. The consumer that finds the queue empty sets `sleeping`, fences, checks
//! `tail` again and only then parks: with either side's fence or re-check missing, both can miss
//! each other and the consumer sleeps with items waiting (a lost wake-up).

use simkit::{AtomicBool, AtomicU64, Ctx, MemError, Notify, Ordering, Region};

pub const SLOTS: u64 = 4;
const HEAD: u64 = 0;
const TAIL: u64 = 8;
const SLEEPING: u64 = 16;
const DATA: u64 = 24;

/// Bytes of shared memory one queue takes.
pub const BYTES: u64 = DATA + SLOTS * 8;

/// How the component is built: the two mistakes it can be built with (planted bugs).
#[derive(Clone, Copy, Debug, Default)]
pub struct Flaws {
    /// `tail` is published with a relaxed store: the slot may not be visible when it is.
    pub relaxed_publish: bool,
    /// The consumer parks without checking `tail` again after announcing that it sleeps.
    pub no_recheck: bool,
}

#[derive(Clone)]
pub struct Queue {
    head: AtomicU64,
    tail: AtomicU64,
    sleeping: AtomicBool,
    slots: Region,
    bell: Notify,
    flaws: Flaws,
}

impl Queue {
    pub fn new(ctx: &Ctx, memory: &Region, flaws: Flaws) -> Result<Self, MemError> {
        Ok(Queue {
            head: AtomicU64::named(memory, HEAD, "head")?,
            tail: AtomicU64::named(memory, TAIL, "tail")?,
            sleeping: AtomicBool::named(memory, SLEEPING, "sleeping")?,
            slots: memory.slice("slots", DATA, SLOTS * 8)?,
            bell: Notify::new(ctx, "consumer-bell"),
            flaws,
        })
    }

    /// The producer's side: spins while the queue is full (telling the scheduler it waits on
    /// the consumer, so a strategy that favours it cannot starve the consumer).
    pub async fn push(&self, ctx: &Ctx, item: u64) -> Result<(), MemError> {
        let tail = self.tail.load(Ordering::Relaxed).await;
        while tail - self.head.load(Ordering::Acquire).await >= SLOTS {
            ctx.spin_hint().await;
        }
        self.slots
            .store_u64((tail % SLOTS) * 8, item, Ordering::Relaxed)
            .await?;
        let publish = if self.flaws.relaxed_publish {
            Ordering::Relaxed
        } else {
            Ordering::Release
        };
        self.tail.store(tail + 1, publish).await;
        ctx.fence(Ordering::SeqCst).await;
        if self.sleeping.load(Ordering::Relaxed).await {
            self.bell.notify().await;
        }
        Ok(())
    }

    /// The consumer's side: parks while the queue is empty.
    pub async fn pop(&self, ctx: &Ctx) -> Result<u64, MemError> {
        let head = self.head.load(Ordering::Relaxed).await;
        loop {
            if self.tail.load(Ordering::Acquire).await > head {
                break;
            }
            self.sleeping.store(true, Ordering::Relaxed).await;
            ctx.fence(Ordering::SeqCst).await;
            if self.flaws.no_recheck || self.tail.load(Ordering::Acquire).await == head {
                let tail = self.tail.clone();
                // Judged from outside: parked while an item is committed is a lost wake-up.
                self.bell
                    .wait_guarded("consumer", move |m| tail.committed(m) > head)
                    .await;
            }
            self.sleeping.store(false, Ordering::Relaxed).await;
        }
        let item = self
            .slots
            .load_u64((head % SLOTS) * 8, Ordering::Relaxed)
            .await?;
        self.head.store(head + 1, Ordering::Release).await;
        Ok(item)
    }
}
