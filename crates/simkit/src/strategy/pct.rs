//! PCT, probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010), depth d.
//!
//! Every schedulable item gets a priority when first seen: a uniform 62-bit draw, so the initial
//! priorities form a uniform random permutation (ties, vanishingly rare, go to the lower item)
//! even for items that appear mid-run. `d - 1` change points are drawn uniformly from `1..=k`
//! (k = the expected number of steps). The highest-priority ready item always runs; at the i-th
//! change point the item about to run drops below every initial priority (later change points
//! lower). A bug of depth d is then found with probability at least 1/(n·k^(d-1)) per run. An
//! actor that yields in a spin loop drops to the bottom too, so a spinner cannot starve the peer
//! it waits for (as in Shuttle).
//!
//! Cost: the change points are drawn once and sorted (O(d log d)); steps only grow, so a cursor
//! walks them and each is passed once. The harness bounds d by the run's step budget.

use super::{Schedulable, Strategy};
use crate::decision::DecisionSource;
use crate::kernel::ActorId;
use std::collections::BTreeMap;

pub struct Pct {
    depth: u32,
    steps: u64,
    /// Initial priorities are non-negative; lowered ones negative.
    priority: BTreeMap<Schedulable, i64>,
    /// Sorted change points; those before `next_change` are spent.
    change_points: Vec<u64>,
    next_change: usize,
    next_low: i64,
    initialised: bool,
}

impl Pct {
    pub fn new(depth: u32, steps: u64) -> Self {
        Self {
            depth: depth.max(1),
            steps: steps.max(1),
            priority: BTreeMap::new(),
            change_points: Vec::new(),
            next_change: 0,
            next_low: -1,
            initialised: false,
        }
    }

    fn lower(&mut self, item: Schedulable) {
        self.priority.insert(item, self.next_low);
        self.next_low -= 1;
    }

    fn best(&self, ready: &[Schedulable]) -> usize {
        let mut best = 0;
        let mut best_p = i64::MIN;
        for (i, item) in ready.iter().enumerate() {
            let p = self.priority.get(item).copied().unwrap_or(i64::MIN);
            if p > best_p {
                best = i;
                best_p = p;
            }
        }
        best
    }
}

impl Strategy for Pct {
    fn name(&self) -> &'static str {
        "pct"
    }

    fn pick(&mut self, ready: &[Schedulable], step: u64, ds: &mut DecisionSource) -> usize {
        if !self.initialised {
            self.initialised = true;
            self.change_points.reserve(self.depth as usize - 1);
            for _ in 1..self.depth {
                self.change_points.push(1 + ds.choose(self.steps));
            }
            self.change_points.sort_unstable();
        }
        for item in ready {
            if !self.priority.contains_key(item) {
                let p = ds.choose(1 << 62) as i64;
                self.priority.insert(*item, p);
            }
        }
        let mut choice = self.best(ready);
        // Change points are 1-based step numbers; `step` counts steps already taken, and every
        // step passes through here once, so no point below `step + 1` is still unspent.
        while let Some(&at) = self.change_points.get(self.next_change) {
            if at > step + 1 {
                break;
            }
            self.next_change += 1;
            if at == step + 1 {
                self.lower(ready[choice]);
                choice = self.best(ready);
            }
        }
        choice
    }

    fn yielded(&mut self, actor: ActorId) {
        self.lower(Schedulable::Actor(actor));
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

    #[test]
    fn initial_priorities_are_a_uniform_permutation() {
        // Over many seeds each of three items runs first about a third of the time.
        let mut first = [0u32; 3];
        for seed in 0..3000 {
            let mut p = Pct::new(1, 10);
            let mut ds = DecisionSource::seeded(seed);
            first[p.pick(&[a(0), a(1), a(2)], 0, &mut ds)] += 1;
        }
        assert!(first.iter().all(|c| (900..1100).contains(c)), "{first:?}");
    }

    #[test]
    fn many_change_points_cost_little() {
        // A million change points over a short run: drawn, sorted and passed in well under a
        // second (removing each from the front of a vector took minutes).
        let mut p = Pct::new(1_000_000, 200);
        let mut ds = DecisionSource::seeded(1);
        let ready = [a(0), a(1), a(2)];
        for step in 0..300 {
            p.pick(&ready, step, &mut ds);
        }
        assert_eq!(p.next_change, p.change_points.len());
    }

    #[test]
    fn yielding_actor_gives_way() {
        let mut p = Pct::new(1, 10);
        let mut ds = DecisionSource::seeded(5);
        let ready = [a(0), a(1)];
        let top = p.pick(&ready, 0, &mut ds);
        p.yielded(ActorId(top as u32));
        assert_ne!(p.pick(&ready, 1, &mut ds), top);
    }
}
