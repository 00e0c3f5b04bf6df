//! Uniform random walk: every step picks uniformly among the schedulable items.

use super::{Schedulable, Strategy};
use crate::decision::DecisionSource;

pub struct RandomWalk;

impl Strategy for RandomWalk {
    fn name(&self) -> &'static str {
        "random"
    }

    fn pick(&mut self, ready: &[Schedulable], _step: u64, ds: &mut DecisionSource) -> usize {
        ds.index(ready.len())
    }
}
