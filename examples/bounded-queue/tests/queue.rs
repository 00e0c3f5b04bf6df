//! The example's own tests: the healthy queue passes a sweep, and each planted bug is found by
//! one.

use bounded_queue::{QueueScenario, catalogue};
use harness::{RunSpec, StrategyName};

static QUEUE: QueueScenario = QueueScenario;

#[test]
fn the_queue_is_clean() {
    harness::check(&QUEUE, 0..300);
}

fn first_failure(bug: &str, strategy: StrategyName) -> Option<u64> {
    let catalogue = catalogue();
    (0..2000).find(|&seed| {
        let spec = RunSpec {
            plant: Some(bug.to_string()),
            strategy,
            ..RunSpec::seeded("bounded-queue", seed)
        };
        !harness::run(&catalogue, &spec)
            .expect("known names")
            .passed()
    })
}

#[test]
fn each_planted_bug_is_found() {
    for bug in ["queue-relaxed-publish", "queue-no-recheck"] {
        for strategy in [StrategyName::Random, StrategyName::Pct] {
            assert!(
                first_failure(bug, strategy).is_some(),
                "{bug} not found in 2000 seeds under {}",
                strategy.name()
            );
        }
    }
}
