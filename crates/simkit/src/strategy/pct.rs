//! PCT, probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010), depth d.
//!
//! Every schedulable item gets a distinct priority: when first seen, it is inserted at a uniformly
//! drawn position among the items that still hold an initial priority (so the initial priorities
//! are a uniform random permutation, even for items that appear mid-run). `d - 1` change points
//! are drawn uniformly from `1..=k` (k = the expected number of steps). The highest-priority
//! ready item always runs; at the i-th change point the item about to run drops to priority
//! `d - 1 - i`, below every initial priority. A bug of depth d is then found with probability at
//! least 1/(n·k^(d-1)) per run. An actor that yields in a spin loop drops to the bottom, so a
//! spinner cannot starve the peer it waits for (as in Shuttle).

use super::{Schedulable, Strategy};
use crate::decision::DecisionSource;
use crate::kernel::ActorId;
use std::collections::BTreeMap;

pub struct Pct {
    depth: u32,
    steps: u64,
    /// Items holding an initial priority, highest first.
    ranked: Vec<Schedulable>,
    /// Items lowered at a change point (or by yielding), with their low priority.
    lowered: BTreeMap<Schedulable, i64>,
    change_points: Vec<u64>,
    next_low: i64,
    initialised: bool,
}

impl Pct {
    pub fn new(depth: u32, steps: u64) -> Self {
        Self {
            depth: depth.max(1),
            steps: steps.max(1),
            ranked: Vec::new(),
            lowered: BTreeMap::new(),
            change_points: Vec::new(),
            next_low: -1,
            initialised: false,
        }
    }

    fn priority(&self, item: &Schedulable) -> i64 {
        if let Some(p) = self.lowered.get(item) {
            return *p;
        }
        match self.ranked.iter().position(|r| r == item) {
            Some(pos) => i64::MAX - pos as i64,
            None => i64::MIN,
        }
    }

    fn lower(&mut self, item: Schedulable, priority: i64) {
        self.ranked.retain(|r| *r != item);
        self.lowered.insert(item, priority);
    }
}

impl Strategy for Pct {
    fn name(&self) -> &'static str {
        "pct"
    }

    fn pick(&mut self, ready: &[Schedulable], step: u64, ds: &mut DecisionSource) -> usize {
        if !self.initialised {
            self.initialised = true;
            for _ in 1..self.depth {
                self.change_points.push(1 + ds.choose(self.steps));
            }
            self.change_points.sort_unstable();
        }
        for item in ready {
            if !self.lowered.contains_key(item) && !self.ranked.contains(item) {
                let pos = ds.index(self.ranked.len() + 1);
                self.ranked.insert(pos, *item);
            }
        }
        let best = |me: &Self| {
            (0..ready.len())
                .max_by_key(|i| me.priority(&ready[*i]))
                .unwrap_or(0)
        };
        let mut choice = best(self);
        // Change points are 1-based step numbers; `step` counts steps already taken.
        while let Ok(pos) = self.change_points.binary_search(&(step + 1)) {
            self.change_points.remove(pos);
            // Points drawn later sit lower (priorities d-2, d-3, ... below all initial ones).
            let low = self.next_low;
            self.next_low -= 1;
            self.lower(ready[choice], low);
            choice = best(self);
        }
        choice
    }

    fn yielded(&mut self, actor: ActorId) {
        let low = self.next_low;
        self.next_low -= 1;
        self.lower(Schedulable::Actor(actor), low);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(i: u32) -> Schedulable {
        Schedulable::Actor(ActorId(i))
    }

    #[test]
    fn depth_one_runs_highest_priority_to_completion() {
        // With no change points the same item keeps winning while it is ready.
        let mut p = Pct::new(1, 100);
        let mut ds = DecisionSource::seeded(3);
        let ready = [a(0), a(1), a(2)];
        let first = p.pick(&ready, 0, &mut ds);
        for step in 1..50 {
            assert_eq!(p.pick(&ready, step, &mut ds), first);
        }
    }

    #[test]
    fn change_point_switches_item() {
        let mut switched = 0;
        for seed in 0..200 {
            let mut p = Pct::new(2, 10);
            let mut ds = DecisionSource::seeded(seed);
            let ready = [a(0), a(1)];
            let picks: Vec<usize> = (0..10).map(|s| p.pick(&ready, s, &mut ds)).collect();
            let changes = picks.windows(2).filter(|w| w[0] != w[1]).count();
            assert!(changes <= 1, "{picks:?}");
            switched += changes;
        }
        // The change point lands on step 1 (before any switch is visible) one time in ten.
        assert!(switched > 150, "{switched}");
    }
}
