//! How an RPC workload draws its next action: a table of actions with weights, one draw below
//! the total picking the action whose share it falls in. Each workload has its own actions;
//! a run may scale their weights (swarm testing: a run heavy on pipelining and light on
//! delivery reaches states that the average mix rarely does).

use simkit::Ctx;

/// The actions of a workload with their weights, in order.
#[derive(Clone, Debug)]
pub struct Mix<A> {
    weights: Vec<(A, u64)>,
}

impl<A: Copy> Mix<A> {
    /// `base` with each action's weight scaled by `factor(action)`.
    pub fn new(base: &[(A, u64)], mut factor: impl FnMut(A) -> u64) -> Self {
        let weights = base.iter().map(|&(a, w)| (a, w * factor(a))).collect();
        Mix { weights }
    }

    /// The sum of the weights (at least 1, so that a draw below it is always possible).
    pub fn total(&self) -> u64 {
        self.weights.iter().map(|&(_, w)| w).sum::<u64>().max(1)
    }

    /// The action at position `r` (in `0..total()`); none if every weight is zero.
    pub fn pick(&self, mut r: u64) -> Option<A> {
        for &(a, w) in &self.weights {
            if r < w {
                return Some(a);
            }
            r -= w;
        }
        None
    }

    /// Draws an action (one draw below the total).
    pub fn draw(&self, ctx: &Ctx) -> Option<A> {
        self.pick(ctx.choose(self.total()))
    }
}
