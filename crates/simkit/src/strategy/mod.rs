//! Scheduling strategies. Each picks the next schedulable item (an actor step or a store-buffer
//! drain) and draws only from the decision source, so any strategy can be driven by a seed, by
//! fuzzer bytes, or by a recorded stream.

mod pct;
mod random;
mod replay;

pub use pct::Pct;
pub use random::RandomWalk;
pub use replay::Replay;

use crate::decision::DecisionSource;
use crate::kernel::ActorId;

/// Something the scheduler can run for one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Schedulable {
    /// Poll the actor up to its next scheduling point.
    Actor(ActorId),
    /// Move the oldest store in this actor's store buffer to memory.
    Drain(ActorId),
}

impl std::fmt::Display for Schedulable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Schedulable::Actor(a) => write!(f, "a{}", a.0),
            Schedulable::Drain(a) => write!(f, "d{}", a.0),
        }
    }
}

impl std::str::FromStr for Schedulable {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, num) = s.split_at(s.len().min(1));
        let id: u32 = num
            .parse()
            .map_err(|_| format!("bad schedule entry '{s}': expected a<N> or d<N>"))?;
        match kind {
            "a" => Ok(Schedulable::Actor(ActorId(id))),
            "d" => Ok(Schedulable::Drain(ActorId(id))),
            _ => Err(format!("bad schedule entry '{s}': expected a<N> or d<N>")),
        }
    }
}

pub trait Strategy {
    fn name(&self) -> &'static str;

    /// Index into `ready` (non-empty, sorted) of the item to run at step `step`.
    fn pick(&mut self, ready: &[Schedulable], step: u64, ds: &mut DecisionSource) -> usize;

    /// The actor yielded in a spin loop: it waits for someone else.
    fn yielded(&mut self, _actor: ActorId) {}
}

/// The strategies a run can name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StrategyKind {
    Random,
    Pct { depth: u32, steps: u64 },
    Replay { schedule: Vec<Schedulable> },
}

impl StrategyKind {
    pub fn name(&self) -> &'static str {
        match self {
            StrategyKind::Random => "random",
            StrategyKind::Pct { .. } => "pct",
            StrategyKind::Replay { .. } => "replay",
        }
    }

    pub fn build(&self) -> Box<dyn Strategy> {
        match self {
            StrategyKind::Random => Box::new(RandomWalk),
            StrategyKind::Pct { depth, steps } => Box::new(Pct::new(*depth, *steps)),
            StrategyKind::Replay { schedule } => Box::new(Replay::new(schedule.clone())),
        }
    }
}
