//! One of N disjoint parts of a seed range: shard `I/N` holds the seeds `A + I`, `A + I + N`,
//! `A + I + 2N`, ... below `B`. Interleaved rather than cut in blocks, so every shard sees early
//! and late seeds alike (a sweep's cost and failures are spread over the range, and an
//! interrupted sharded sweep has still covered the whole range thinly).

use crate::exit::UsageError;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

/// More shards than this is a typo, not a cluster.
pub const MAX_SHARDS: u64 = 1 << 20;

impl Shard {
    /// The whole range as one shard.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// `I/N`, with `0 <= I < N <= MAX_SHARDS`.
    pub fn parse(s: &str) -> Result<Shard, UsageError> {
        let bad =
            |why: &str| UsageError(format!("--shard '{s}': {why} (expected I/N, 0 <= I < N)"));
        let (i, n) = s.split_once('/').ok_or_else(|| bad("no '/'"))?;
        let index: u64 = i.trim().parse().map_err(|_| bad("I is not a number"))?;
        let count: u64 = n.trim().parse().map_err(|_| bad("N is not a number"))?;
        if count == 0 || count > MAX_SHARDS {
            return Err(bad(&format!("N must be 1..={MAX_SHARDS}")));
        }
        if index >= count {
            return Err(bad("I must be below N"));
        }
        Ok(Shard { index, count })
    }

    pub fn is_whole(&self) -> bool {
        self.count == 1
    }

    /// Whether `seed` of the range starting at `start` belongs to this shard.
    pub fn holds(&self, start: u64, seed: u64) -> bool {
        seed >= start && (seed - start) % self.count == self.index
    }

    /// The `k`-th seed of this shard in `[start, end)`, if any.
    pub fn nth(&self, start: u64, end: u64, k: u64) -> Option<u64> {
        let seed = start
            .checked_add(self.index)?
            .checked_add(k.checked_mul(self.count)?)?;
        (seed < end).then_some(seed)
    }

    /// How many seeds of `[start, end)` this shard holds.
    pub fn len(&self, start: u64, end: u64) -> u64 {
        let span = end.saturating_sub(start);
        span / self.count + u64::from(span % self.count > self.index)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_disjoint_and_cover_the_range() {
        for (start, end) in [(0u64, 1u64), (0, 10), (5, 17), (100, 101)] {
            for count in 1..6 {
                let mut seen = Vec::new();
                for index in 0..count {
                    let s = Shard { index, count };
                    let mine: Vec<u64> = (0..).map_while(|k| s.nth(start, end, k)).collect();
                    assert_eq!(mine.len() as u64, s.len(start, end));
                    assert!(mine.iter().all(|&seed| s.holds(start, seed)));
                    seen.extend(mine);
                }
                seen.sort_unstable();
                assert_eq!(seen, (start..end).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn parse_refuses_what_cannot_be_a_shard() {
        assert_eq!(Shard::parse("2/3").ok(), Some(Shard { index: 2, count: 3 }));
        for bad in ["3/3", "1/0", "a/2", "1", "0/2000000000"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }
}
