//! Replay of a recorded schedule: the i-th step runs the i-th recorded item. It draws nothing
//! from the decision source for scheduling, so a schedule can come from a hand-written list, a
//! hardware run or an earlier simulated run. Where the recorded item is not ready (the program
//! changed) it falls back to the first ready item and counts a divergence.

use super::{Schedulable, Strategy};
use crate::decision::DecisionSource;

pub struct Replay {
    schedule: Vec<Schedulable>,
    divergences: u64,
}

impl Replay {
    pub fn new(schedule: Vec<Schedulable>) -> Self {
        Self {
            schedule,
            divergences: 0,
        }
    }

    pub fn divergences(&self) -> u64 {
        self.divergences
    }
}

impl Strategy for Replay {
    fn name(&self) -> &'static str {
        "replay"
    }

    fn pick(&mut self, ready: &[Schedulable], step: u64, _ds: &mut DecisionSource) -> usize {
        match self
            .schedule
            .get(step as usize)
            .and_then(|want| ready.iter().position(|r| r == want))
        {
            Some(i) => i,
            None => {
                self.divergences += 1;
                0
            }
        }
    }
}
