//! What a run observed besides its trace, for exploration and sweep summaries:
//!
//! - **coverage**: abstract-state features. Components' observers report `(domain, key)` pairs
//!   that name a state they saw (an RPC message kind against the table states of its two
//!   ends, a ring's fill against its waiter and close flags); the kernel adds one feature per
//!   (actor family, event kind) of the trace, where an actor's family is its name without
//!   digits (`vcpu0/recv1` and `vcpu1/recv0` are one family). A feature is a 64-bit hash.
//! - **sometimes-goals**: named states a scenario declares must be reached at least once
//!   across a sweep; a run records which it reached.
//! - **faults**: every fault kind an authority armed in the run (its knob was switched on) and
//!   how often each fired; buggify sites count their fires too.
//!
//! Observing draws nothing from the decision source and writes no trace line, so it cannot
//! change a run. Features go into a set that is only ever read sorted.

use crate::trace::{fnv1a, fnv1a_of};
use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// Features are hashes already: the set hashes them no further.
#[derive(Default)]
pub struct FeatureHasher(u64);

impl Hasher for FeatureHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = fnv1a(self.0, bytes);
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type FeatureSet = HashSet<u64, BuildHasherDefault<FeatureHasher>>;

/// A fault kind's count in one run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCount {
    /// The kind was switched on in this run.
    pub armed: bool,
    pub fired: u64,
}

#[derive(Default)]
pub struct Observations {
    features: FeatureSet,
    goals: BTreeMap<&'static str, u64>,
    faults: BTreeMap<String, FaultCount>,
}

/// The feature of `key` in `domain`.
pub fn feature(domain: &str, key: u64) -> u64 {
    fnv1a(fnv1a_of(domain.as_bytes()), &key.to_le_bytes())
}

/// The kernel-level feature of an event kind by an actor family (the actor's name without its
/// digits).
pub fn actor_event_feature(actor: &str, event: &str) -> u64 {
    actor_parts_event_feature(&[actor], event)
}

/// As [`actor_event_feature`] for the actor name the concatenation of `parts`.
pub fn actor_parts_event_feature(parts: &[&str], event: &str) -> u64 {
    let mut h = fnv1a_of(b"kernel");
    for part in parts {
        for b in part.bytes().filter(|b| !b.is_ascii_digit()) {
            h = fnv1a(h, &[b]);
        }
    }
    fnv1a(fnv1a(h, b" "), event.as_bytes())
}

impl Observations {
    pub fn cover(&mut self, feature: u64) {
        self.features.insert(feature);
    }

    pub fn reached(&mut self, goal: &'static str) {
        *self.goals.entry(goal).or_default() += 1;
    }

    /// Declares that `kind` is switched on in this run (it may fire).
    pub fn arm(&mut self, kind: &str) {
        match self.faults.get_mut(kind) {
            Some(c) => c.armed = true,
            None => {
                self.faults.insert(
                    kind.to_string(),
                    FaultCount {
                        armed: true,
                        fired: 0,
                    },
                );
            }
        }
    }

    /// Counts one firing of `kind` (which is then armed).
    pub fn fired(&mut self, kind: &str) {
        match self.faults.get_mut(kind) {
            Some(c) => {
                c.armed = true;
                c.fired += 1;
            }
            None => {
                self.faults.insert(
                    kind.to_string(),
                    FaultCount {
                        armed: true,
                        fired: 1,
                    },
                );
            }
        }
    }

    /// The features seen, sorted.
    pub fn features(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.features.iter().copied().collect();
        v.sort_unstable();
        v
    }

    pub fn feature_count(&self) -> usize {
        self.features.len()
    }

    /// Goals reached, with how many times.
    pub fn goals(&self) -> &BTreeMap<&'static str, u64> {
        &self.goals
    }

    pub fn faults(&self) -> &BTreeMap<String, FaultCount> {
        &self.faults
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actor_families_ignore_digits() {
        assert_eq!(
            actor_event_feature("vcpu0/recv1", "park"),
            actor_event_feature("vcpu1/recv0", "park")
        );
        assert_ne!(
            actor_event_feature("vcpu0", "park"),
            actor_event_feature("vcpu0", "wake")
        );
        assert_ne!(feature("rpc", 1), feature("pipe", 1));
    }

    #[test]
    fn faults_are_armed_when_they_fire() {
        let mut o = Observations::default();
        o.arm("net.drop");
        o.fired("net.hold");
        o.fired("net.hold");
        assert_eq!(
            o.faults()["net.drop"],
            FaultCount {
                armed: true,
                fired: 0
            }
        );
        assert_eq!(o.faults()["net.hold"].fired, 2);
        o.cover(7);
        o.cover(3);
        o.cover(7);
        assert_eq!(o.features(), vec![3, 7]);
    }
}
