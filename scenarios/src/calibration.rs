//! `calib-depth2`: a calibration scenario with a known ordering bug of depth 2, for comparing
//! strategies (DESIGN.md §4).
//!
//! A worker does some work, holds `busy` for a single step, then works on. A watchdog polls
//! `busy` and declares the worker hung when it sees it set on `STREAK` consecutive polls. The
//! worker never blocks while busy, so any hang alarm is false. The false alarm needs exactly two
//! orderings: the worker's `busy = 1` before the watchdog's streak starts, and the whole streak
//! before the worker's `busy = 0`. A random walk must keep the worker off the CPU for `STREAK`
//! consecutive watchdog polls (about 2^-STREAK); PCT needs one well-placed change point.

use crate::{Scenario, Setup, Violation};
use simkit::{KernelOptions, Ordering};
use std::cell::Cell;
use std::rc::Rc;

pub struct CalibDepth2;

const WORK: usize = 20;
const POLLS: usize = 30;
const STREAK: usize = 8;

impl Scenario for CalibDepth2 {
    fn name(&self) -> &'static str {
        "calib-depth2"
    }

    fn description(&self) -> &'static str {
        "calibration: a watchdog false alarm that needs two orderings (a known depth-2 bug)"
    }

    fn kind(&self) -> crate::ScenarioKind {
        crate::ScenarioKind::Calibration
    }

    fn expected_steps(&self) -> u64 {
        (2 * WORK + 2 + POLLS + 2) as u64
    }

    fn kernel_options(&self) -> KernelOptions {
        KernelOptions {
            buggify: false,
            ..KernelOptions::default()
        }
    }

    fn run(&self, setup: &mut Setup) -> Vec<Violation> {
        let busy = setup.sim.alloc_region("busy", 8);
        let alarms = Rc::new(Cell::new(0u32));
        let (b, ctx) = (busy.clone(), setup.ctx());
        setup.sim.spawn("worker", async move {
            for _ in 0..WORK {
                ctx.yield_now().await;
            }
            // Eight-byte region at offset 0: in bounds.
            let _ = b.store_u64(0, 1, Ordering::Relaxed).await;
            let _ = b.store_u64(0, 0, Ordering::Relaxed).await;
            for _ in 0..WORK {
                ctx.yield_now().await;
            }
        });
        let (b, ctx, a) = (busy.clone(), setup.ctx(), alarms.clone());
        setup.sim.spawn("watchdog", async move {
            let mut streak = 0;
            for _ in 0..POLLS {
                if b.load_u64(0, Ordering::Relaxed).await == Ok(1) {
                    streak += 1;
                    if streak == STREAK {
                        ctx.trace(
                            "alarm",
                            format_args!("worker busy for {STREAK} polls: declared hung"),
                        );
                        a.set(a.get() + 1);
                    }
                } else {
                    streak = 0;
                }
            }
        });
        setup.run();
        let mut v: Vec<Violation> = Vec::new();
        // The spec: the worker's busy section is one step and never blocks, so it never hangs.
        if alarms.get() > 0 {
            v.push(Violation::new(
                "no-false-alarm",
                "watchdog declared a non-blocking worker hung",
            ));
        }
        v
    }
}
