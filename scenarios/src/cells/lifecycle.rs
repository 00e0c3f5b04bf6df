//! `cells-lifecycle`: shutdown and close race with in-flight steps and sibling calls.
//!
//! Workload (derived per seed): 2–3 `node` cells that may all call each other; each has a
//! stepper taking 4–12 steps (idle ticks or call paths of 1–2 hops) whatever happens to it, and
//! an external actor makes host-initiated calls. A lifecycle actor waits a seeded time, then
//! runs 1–4 seeded operations on seeded cells: shutdown, close, a second close, a shutdown after
//! close. Faults: fuel slices of 1–40 units, each a scheduling point, so a shutdown or close
//! can arrive while an entry is suspended between two instructions or waiting on a sibling.
//!
//! Oracles: nothing enters a cell after `pulp_shutdown` began, a cell is never dropped while an
//! export of it runs, no concurrent entry, every sibling call answered (`models::cells`, from the
//! engine binding's log); every error a step, call, shutdown or close returns is a lifecycle
//! error (`ShutDown`, `Closed`, `NotInitialized`) and every code a lifecycle code; close is safe
//! twice; liveness; no panic.

use crate::cells::envelope;
use crate::cells::world::CellWorld;
use crate::{PlantedBug, Scenario, Setup, Violation};
use cellhost::abi::call_code;
use cellhost::{CellError, HostConfig};
use std::cell::RefCell;
use std::rc::Rc;

pub struct CellsLifecycle;

const CLOSE_RACE: &str = "cells-close-race";

static BUGS: &[PlantedBug] = &[PlantedBug {
    name: CLOSE_RACE,
    scenario: "cells-lifecycle",
    description: "close does not wait for the entry lock, so it drops the instance under a running step or call",
    mirrors: "Pulp v0.2 Close racing Call/Step before Close was serialized with the module mutex (seed doc: 'Serialized against every other entry point')",
    needs_mem: None,
}];

const NAMES: [&str; 3] = ["a", "b", "c"];

#[derive(Clone, Copy, Debug)]
enum Op {
    Shutdown,
    Close,
}

fn lifecycle_error(e: &CellError) -> bool {
    matches!(
        e,
        CellError::ShutDown | CellError::Closed | CellError::NotInitialized
    )
}

impl Scenario for CellsLifecycle {
    fn name(&self) -> &'static str {
        "cells-lifecycle"
    }

    fn description(&self) -> &'static str {
        "shutdown and close (twice) race with in-flight steps and sibling calls of 2-3 cells"
    }

    fn expected_steps(&self) -> u64 {
        // Measured mean: 88 steps per run.
        90
    }

    fn bugs(&self) -> &'static [PlantedBug] {
        BUGS
    }

    fn run(&self, setup: &mut Setup) -> Vec<Violation> {
        let n = setup.derive("cells", 2, 3) as usize;
        let names = &NAMES[..n];
        let plans: Vec<Vec<String>> = names
            .iter()
            .map(|me| {
                (0..setup.derive(&format!("{me}_steps"), 4, 12))
                    .map(|s| {
                        (0..setup.derive(&format!("{me}_s{s}_hops"), 0, 2))
                            .map(|h| {
                                let pick =
                                    setup.derive(&format!("{me}_s{s}_h{h}"), 0, n as u64 - 1);
                                names[pick as usize].to_string()
                            })
                            .collect::<Vec<_>>()
                            .join("/")
                    })
                    .collect()
            })
            .collect();
        let delay = setup.derive("lifecycle_after_ns", 0, 8_000);
        let ops: Vec<(Op, &'static str)> = (0..setup.derive("lifecycle_ops", 1, 4))
            .map(|k| {
                let op = if setup.derive(&format!("op{k}_close"), 0, 1) == 1 {
                    Op::Close
                } else {
                    Op::Shutdown
                };
                let cell = names[setup.derive(&format!("op{k}_cell"), 0, n as u64 - 1) as usize];
                (op, cell)
            })
            .collect();
        let mut bugs = 0;
        if setup.planted(CLOSE_RACE) {
            bugs |= cellhost::planted::CLOSE_WITHOUT_LOCK;
        }
        let ctx = setup.ctx();
        let world = CellWorld::new(
            &ctx,
            40,
            HostConfig {
                bugs,
                ..HostConfig::default()
            },
        );
        let mut v = Vec::new();
        for me in names {
            let deps: Vec<String> = names
                .iter()
                .filter(|o| *o != me)
                .map(|o| format!("\"{o}\""))
                .collect();
            let manifest = format!(
                "name = \"{me}\"\nversion = \"1\"\ndepends_on = [{}]",
                deps.join(", ")
            );
            if let Err(e) = world.load(&manifest, "node") {
                v.push(Violation::new("cell-load", e));
            }
        }
        let errors: Rc<RefCell<Vec<String>>> = Rc::default();
        for (me, plan) in names.iter().zip(plans) {
            let (host, errs, c, me) = (world.host.clone(), errors.clone(), ctx.clone(), *me);
            ctx.spawn(&format!("step-{me}"), async move {
                match host.init(me).await {
                    Ok(()) => {}
                    Err(e) if lifecycle_error(&e) => {}
                    Err(e) => errs.borrow_mut().push(format!("init cell {me}: {e}")),
                }
                for (k, p) in plan.iter().enumerate() {
                    match host.step(me, &envelope(k as u64, c.now(), p)).await {
                        Ok(value) => {
                            c.trace("stepped", format_args!("{me} '{p}' -> {value}"));
                            // A cell may not call itself (no manifest names it), and a cycle
                            // or a cell that is gone fails with its code.
                            let allowed = [
                                call_code::TARGET_GONE,
                                call_code::REENTRANT,
                                call_code::NOT_AUTHORIZED,
                            ];
                            if value <= 0 && !allowed.iter().any(|c| -(*c as i32) == value) {
                                errs.borrow_mut()
                                    .push(format!("step cell {me} '{p}' answered code {value}"));
                            }
                        }
                        Err(e) if lifecycle_error(&e) => {
                            c.trace("step-refused", format_args!("{me}: {e}"));
                        }
                        Err(e) => errs.borrow_mut().push(format!("step cell {me} '{p}': {e}")),
                    }
                }
            });
        }
        {
            let (host, errs, c) = (world.host.clone(), errors.clone(), ctx.clone());
            let names: Vec<&'static str> = names.to_vec();
            ctx.spawn("lifecycle", async move {
                c.sleep(delay).await;
                for (op, cell) in ops {
                    let r = match op {
                        Op::Shutdown => host.shutdown(cell).await,
                        Op::Close => host.close(cell).await,
                    };
                    c.trace("lifecycle", format_args!("{op:?} {cell}: {r:?}"));
                    if let Err(e) = r
                        && !lifecycle_error(&e)
                    {
                        errs.borrow_mut().push(format!("{op:?} cell {cell}: {e}"));
                    }
                }
                // Closing everything, each twice: the second close must be a no-op.
                for cell in names {
                    for _ in 0..2 {
                        if let Err(e) = host.close(cell).await {
                            errs.borrow_mut()
                                .push(format!("final close cell {cell}: {e}"));
                        }
                    }
                }
            });
        }
        setup.run();
        v.extend(world.check(&|_| true));
        v.extend(
            errors
                .borrow()
                .iter()
                .map(|e| Violation::new("cell-error", e.clone())),
        );
        v
    }
}
