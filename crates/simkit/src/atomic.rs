//! Typed atomics over shared memory: a field of a [`Region`] used as an `AtomicU64`, `AtomicU32`,
//! `AtomicU8` or `AtomicBool`, with the memory model's orderings. Every operation is a
//! scheduling point and a trace line, exactly as the region's untyped accesses are (they are
//! the same accesses). The offset is checked once, when the handle is made.
//!
//! [`committed`](AtomicU64::committed) reads what an outside observer sees (committed memory,
//! no store buffer): the form a wait condition or an oracle takes, e.g. "the consumer must not
//! stay parked while `head` is past what it read": `move |m| head.committed(m) > seen`.

use crate::memory::{MemError, Memory, Ordering, le_value};
use crate::region::{Region, RmwOp};

macro_rules! atomic_int {
    ($name:ident, $t:ty, $width:expr, $doc:expr) => {
        #[doc = $doc]
        #[derive(Clone)]
        pub struct $name {
            region: Region,
            offset: u64,
        }

        impl $name {
            const WIDTH: usize = $width;

            /// The field at `offset` of `region`.
            pub fn at(region: &Region, offset: u64) -> Result<Self, MemError> {
                region.check(offset, Self::WIDTH as u64)?;
                Ok(Self {
                    region: region.clone(),
                    offset,
                })
            }

            /// The field at `offset` of `region`, named `name` in trace lines
            /// (`region.name`).
            pub fn named(region: &Region, offset: u64, name: &str) -> Result<Self, MemError> {
                let field = Self::at(region, offset)?;
                region.name_field(offset, Self::WIDTH as u64, name);
                Ok(field)
            }

            fn ok<R>(r: Result<R, MemError>) -> R {
                match r {
                    Ok(v) => v,
                    // The offset and width were checked when the handle was made.
                    Err(e) => unreachable!("a checked atomic field failed: {e}"),
                }
            }

            pub async fn load(&self, order: Ordering) -> $t {
                Self::ok(self.region.load(self.offset, Self::WIDTH, order).await) as $t
            }

            pub async fn store(&self, value: $t, order: Ordering) {
                Self::ok(
                    self.region
                        .store(self.offset, Self::WIDTH, u64::from(value), order)
                        .await,
                )
            }

            async fn rmw(&self, op: RmwOp, order: Ordering) -> $t {
                Self::ok(self.region.rmw(self.offset, Self::WIDTH, op, order).await) as $t
            }

            /// Stores `value`; returns the old value.
            pub async fn swap(&self, value: $t, order: Ordering) -> $t {
                self.rmw(RmwOp::Swap(u64::from(value)), order).await
            }

            /// Adds `value` (wrapping); returns the old value.
            pub async fn fetch_add(&self, value: $t, order: Ordering) -> $t {
                self.rmw(RmwOp::Add(u64::from(value)), order).await
            }

            /// Subtracts `value` (wrapping); returns the old value.
            pub async fn fetch_sub(&self, value: $t, order: Ordering) -> $t {
                self.rmw(RmwOp::Sub(u64::from(value)), order).await
            }

            pub async fn fetch_or(&self, value: $t, order: Ordering) -> $t {
                self.rmw(RmwOp::Or(u64::from(value)), order).await
            }

            pub async fn fetch_and(&self, value: $t, order: Ordering) -> $t {
                self.rmw(RmwOp::And(u64::from(value)), order).await
            }

            /// Stores `new` if the value is `current`: `Ok(old)` if it did, `Err(actual)` if not.
            pub async fn compare_exchange(
                &self,
                current: $t,
                new: $t,
                success: Ordering,
                failure: Ordering,
            ) -> Result<$t, $t> {
                let r = Self::ok(
                    self.region
                        .compare_exchange(
                            self.offset,
                            Self::WIDTH,
                            u64::from(current),
                            u64::from(new),
                            success,
                            failure,
                        )
                        .await,
                );
                r.map(|v| v as $t).map_err(|v| v as $t)
            }

            /// The committed value (what an outside observer sees), for wait conditions and
            /// oracles; not an access of any actor's, not a scheduling point.
            pub fn committed(&self, mem: &Memory) -> $t {
                let addr = self.region.base() + self.offset;
                mem.committed(addr, Self::WIDTH)
                    .map(|b| le_value(b) as $t)
                    .unwrap_or_default()
            }
        }
    };
}

atomic_int!(AtomicU64, u64, 8, "A `u64` field of shared memory.");
atomic_int!(AtomicU32, u32, 4, "A `u32` field of shared memory.");
atomic_int!(AtomicU8, u8, 1, "A `u8` field of shared memory.");

/// A `bool` field of shared memory (one byte, 0 or 1).
#[derive(Clone)]
pub struct AtomicBool(AtomicU8);

impl AtomicBool {
    pub fn at(region: &Region, offset: u64) -> Result<Self, MemError> {
        AtomicU8::at(region, offset).map(AtomicBool)
    }

    /// The field at `offset` of `region`, named `name` in trace lines.
    pub fn named(region: &Region, offset: u64, name: &str) -> Result<Self, MemError> {
        AtomicU8::named(region, offset, name).map(AtomicBool)
    }

    pub async fn load(&self, order: Ordering) -> bool {
        self.0.load(order).await != 0
    }

    pub async fn store(&self, value: bool, order: Ordering) {
        self.0.store(u8::from(value), order).await;
    }

    /// Stores `value`; returns the old value.
    pub async fn swap(&self, value: bool, order: Ordering) -> bool {
        self.0.swap(u8::from(value), order).await != 0
    }

    /// Stores `new` if the value is `current`: `Ok(old)` if it did, `Err(actual)` if not.
    pub async fn compare_exchange(
        &self,
        current: bool,
        new: bool,
        success: Ordering,
        failure: Ordering,
    ) -> Result<bool, bool> {
        self.0
            .compare_exchange(u8::from(current), u8::from(new), success, failure)
            .await
            .map(|v| v != 0)
            .map_err(|v| v != 0)
    }

    pub fn committed(&self, mem: &Memory) -> bool {
        self.0.committed(mem) != 0
    }
}
