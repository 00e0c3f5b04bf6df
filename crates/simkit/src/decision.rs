//! The one source of every nondeterministic choice in a simulated run.
//!
//! Two modes feed the same interface:
//! - `Seeded`: a ChaCha8 stream from a u64 seed (sweeps, `--seed N`);
//! - `Bytes`: raw bytes (fuzzer input, a recorded or shrunk stream). When the bytes run out every
//!   choice returns its fixed default (`choose` → 0, `chance` → false), so any byte string is a
//!   valid, boring-at-the-end run.
//!
//! Every choice is recorded in the byte encoding that `Bytes` mode reads, so the recording of a
//! seeded run replays the same choices exactly in `Bytes` mode. That is what makes a failing seed
//! shrinkable: shrink the bytes, not the seed.

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

/// How the stream is fed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecisionMode {
    Seeded(u64),
    Bytes(Vec<u8>),
}

enum Feed {
    Seeded(Box<ChaCha8Rng>),
    Bytes { bytes: Vec<u8>, pos: usize },
}

/// One decision stream. Cheap to draw from; records every draw.
pub struct DecisionSource {
    feed: Feed,
    mode_label: DecisionMode,
    recorded: Vec<u8>,
    draws: u64,
    exhausted_draws: u64,
}

/// Number of bytes a choice with this bound occupies in the byte encoding.
fn width_for(bound: u64) -> usize {
    match bound {
        0..=0x100 => 1,
        0x101..=0x1_0000 => 2,
        0x1_0001..=0x1_0000_0000 => 4,
        _ => 8,
    }
}

impl DecisionSource {
    pub fn new(mode: DecisionMode) -> Self {
        let feed = match &mode {
            DecisionMode::Seeded(seed) => Feed::Seeded(Box::new(ChaCha8Rng::seed_from_u64(*seed))),
            DecisionMode::Bytes(bytes) => Feed::Bytes {
                bytes: bytes.clone(),
                pos: 0,
            },
        };
        Self {
            feed,
            mode_label: mode,
            recorded: Vec::new(),
            draws: 0,
            exhausted_draws: 0,
        }
    }

    pub fn seeded(seed: u64) -> Self {
        Self::new(DecisionMode::Seeded(seed))
    }

    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self::new(DecisionMode::Bytes(bytes.to_vec()))
    }

    pub fn mode(&self) -> &DecisionMode {
        &self.mode_label
    }

    /// A value uniformly in `0..bound`. A bound of 0 or 1 is not a choice: it returns 0 and
    /// consumes nothing, so adding a one-way "choice" never shifts the stream.
    pub fn choose(&mut self, bound: u64) -> u64 {
        if bound <= 1 {
            return 0;
        }
        self.draws += 1;
        let width = width_for(bound);
        let value = match &mut self.feed {
            Feed::Seeded(rng) => uniform_below(rng, bound),
            Feed::Bytes { bytes, pos } => {
                if *pos + width <= bytes.len() {
                    let mut raw = [0u8; 8];
                    raw[..width].copy_from_slice(&bytes[*pos..*pos + width]);
                    *pos += width;
                    u64::from_le_bytes(raw) % bound
                } else {
                    // Out of bytes: the fixed default. Consume the tail so later draws stay at it.
                    *pos = bytes.len();
                    self.exhausted_draws += 1;
                    0
                }
            }
        };
        self.recorded
            .extend_from_slice(&value.to_le_bytes()[..width]);
        value
    }

    /// An index into a non-empty collection of `len` items.
    pub fn index(&mut self, len: usize) -> usize {
        self.choose(len as u64) as usize
    }

    /// True with probability `num/den`. The default (value 0) maps to false, so an exhausted
    /// byte stream never fires rare events.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        debug_assert!(den > 0 && num <= den);
        if num == 0 {
            return false;
        }
        if num >= den {
            return true;
        }
        self.choose(den) >= den - num
    }

    /// A value in `lo..=hi` (for the full u64 range, `hi` itself is never drawn).
    pub fn range_inclusive(&mut self, lo: u64, hi: u64) -> u64 {
        debug_assert!(lo <= hi);
        lo + self.choose((hi - lo).saturating_add(1))
    }

    /// Every choice made so far, in the byte encoding `Bytes` mode reads.
    pub fn recorded(&self) -> &[u8] {
        &self.recorded
    }

    /// Number of real choices (bound > 1) drawn so far.
    pub fn draws(&self) -> u64 {
        self.draws
    }

    /// Draws answered with the default because the byte stream had run out.
    pub fn exhausted_draws(&self) -> u64 {
        self.exhausted_draws
    }
}

/// Unbiased `0..bound` from a ChaCha stream by rejection (Lemire's widening multiply).
fn uniform_below(rng: &mut ChaCha8Rng, bound: u64) -> u64 {
    let threshold = bound.wrapping_neg() % bound;
    loop {
        let product = u128::from(rng.next_u64()) * u128::from(bound);
        if (product as u64) >= threshold {
            return (product >> 64) as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = DecisionSource::seeded(7);
        let mut b = DecisionSource::seeded(7);
        for bound in 2..500u64 {
            assert_eq!(a.choose(bound), b.choose(bound));
        }
        assert_eq!(a.recorded(), b.recorded());
    }

    #[test]
    fn different_seeds_differ() {
        let mut a = DecisionSource::seeded(1);
        let mut b = DecisionSource::seeded(2);
        let va: Vec<u64> = (0..64).map(|_| a.choose(1 << 20)).collect();
        let vb: Vec<u64> = (0..64).map(|_| b.choose(1 << 20)).collect();
        assert_ne!(va, vb);
    }

    #[test]
    fn exhausted_bytes_fall_back_to_defaults() {
        let mut ds = DecisionSource::from_bytes(&[5]);
        assert_eq!(ds.choose(10), 5);
        assert_eq!(ds.choose(10), 0);
        assert!(!ds.chance(1, 4));
        assert_eq!(ds.range_inclusive(3, 9), 3);
        assert_eq!(ds.exhausted_draws(), 3);
    }

    #[test]
    fn trivial_bounds_consume_nothing() {
        let mut ds = DecisionSource::from_bytes(&[3]);
        assert_eq!(ds.choose(1), 0);
        assert_eq!(ds.choose(0), 0);
        assert_eq!(ds.choose(4), 3);
        assert_eq!(ds.draws(), 1);
    }

    #[test]
    fn uniform_is_roughly_uniform() {
        let mut ds = DecisionSource::seeded(99);
        let mut counts = [0u32; 6];
        for _ in 0..60_000 {
            counts[ds.index(6)] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }

    proptest! {
        /// The recording of any run replays the same choices in byte mode.
        #[test]
        fn recording_replays_exactly(seed in any::<u64>(), bounds in proptest::collection::vec(0u64..u64::MAX, 0..200)) {
            let mut live = DecisionSource::seeded(seed);
            let first: Vec<u64> = bounds.iter().map(|b| live.choose(*b)).collect();
            let mut replay = DecisionSource::from_bytes(live.recorded());
            let second: Vec<u64> = bounds.iter().map(|b| replay.choose(*b)).collect();
            prop_assert_eq!(first, second);
            prop_assert_eq!(replay.exhausted_draws(), 0);
            prop_assert_eq!(live.recorded(), replay.recorded());
        }

        /// Any byte string is a valid stream: every value stays inside its bound.
        #[test]
        fn any_bytes_are_valid(bytes in proptest::collection::vec(any::<u8>(), 0..64), bounds in proptest::collection::vec(1u64..1000, 0..100)) {
            let mut ds = DecisionSource::from_bytes(&bytes);
            for b in bounds {
                prop_assert!(ds.choose(b) < b);
            }
        }
    }
}
