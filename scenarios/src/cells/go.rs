//! `cells-go`: the Go cells of `crates/cellhost/go-cells/` (built by Go's own toolchain as
//! Pulp's users build them, `GOOS=wasip1 -buildmode=c-shared`) under the simulator.
//!
//! Workload (derived per seed): four cells, each driven by its own actor after a seeded delay:
//! `counter` takes 1–5 steps and 0–3 host-initiated calls in a seeded order; `caller` takes
//! 1–6 steps, each idle or a sibling call to `counter` through `pulp_call` (so counter's own
//! entries and the calls into it race for its lock); `panicker` (`restart = "on_crash"`) takes
//! 2–7 steps, each idle or `boom` (a Go panic, which traps); `exiter` (`restart = "never"`)
//! takes 1–4 steps, one of which may be `exit` (`os.Exit(3)`, WASI `proc_exit`). Every actor
//! ends with `pulp_shutdown` and two closes, whatever happened before. Every instance starts
//! from its module's start image (made once per thread by running `_initialize`), including
//! the new instances restarts make.
//!
//! Faults: fuel slices of 1 to a seeded 2,000–40,000 units, each a scheduling point, so any
//! actor may run between two instructions of a Go export; Go's runtime sleeps and yields
//! through WASI are scheduling points too. Panics and exits are part of the workload.
//!
//! Oracles, from outside the host:
//! - `models::cells` over the engine binding's log of every instance: start-up before any
//!   Pulp entry, nothing entering an instance after one of its exports failed (until a new
//!   instance), nothing before `pulp_init` or after `pulp_shutdown`, exclusive entry, every
//!   sibling call answered, no instance dropped while running.
//! - Reference models of the cells against what they answered and printed: counter's counts
//!   (its steps, the calls from caller and from the host) are exactly 1..=n, and it reports n
//!   when it shuts down; caller answers 0 for an idle step and a count or `TARGET_GONE` for a
//!   call; panicker traps on `boom`, and after each of its first five panics serves again from
//!   a new instance that printed `init #1` (so the instance is new and was initialised once),
//!   then stays failed; exiter answers 1 until `exit`, then `Exited { code: 3 }`, then the
//!   failure for every later step; init, shutdown and close answer as the spec says.
//! - Liveness (nothing left waiting) and no panic, from the harness.

use crate::cells::drive::{Action, Answer, CellSource, Entry, Outcome, Ran, run_cells};
use crate::cells::{check_counts, kernel_options};
use crate::{PlantedBug, Scenario, Setup, Violation};
use cellhost::abi::call_code;
use cellhost::{CellError, Failure, HostConfig};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

pub struct CellsGo;

const SKIP_START: &str = "cells-go-restart-skips-start";
const KEEP_FAILED: &str = "cells-go-trap-keeps-instance";

static BUGS: &[PlantedBug] = &[
    PlantedBug {
        name: SKIP_START,
        scenario: "cells-go",
        description: "a restart makes a bare instance and runs pulp_init without running _initialize (or restoring the start image) first",
        mirrors: "hosts that run a Go reactor's _initialize only when a module is first loaded: Go's wasip1 c-shared exports trap until the runtime is initialised (golang/go wasmexport docs: '_initialize must be called before any export')",
        needs_mem: None,
    },
    PlantedBug {
        name: KEEP_FAILED,
        scenario: "cells-go",
        description: "a trap or proc_exit inside the cell leaves the instance in place and the cell Ready, so the next entry runs on a half-written Go runtime",
        mirrors: "Pulp before failed modules were discarded (a panicking Go cell's next call died with 'fatal error: concurrent map writes'); wazero's guidance that a module whose function trapped must not be called again",
        needs_mem: None,
    },
];

/// The cells `cells-go` loads: (directory name, manifest, module).
const CELLS: [(&str, &str, &[u8]); 4] = [
    (
        "counter",
        include_str!("../../../crates/cellhost/go-cells/counter/pulp.cell.toml"),
        include_bytes!("../../../crates/cellhost/go-cells/counter/cell.wasm"),
    ),
    (
        "caller",
        include_str!("../../../crates/cellhost/go-cells/caller/pulp.cell.toml"),
        include_bytes!("../../../crates/cellhost/go-cells/caller/cell.wasm"),
    ),
    (
        "panicker",
        include_str!("../../../crates/cellhost/go-cells/panicker/pulp.cell.toml"),
        include_bytes!("../../../crates/cellhost/go-cells/panicker/cell.wasm"),
    ),
    (
        "exiter",
        include_str!("../../../crates/cellhost/go-cells/exiter/pulp.cell.toml"),
        include_bytes!("../../../crates/cellhost/go-cells/exiter/cell.wasm"),
    ),
];

/// The cells, parsed once per process.
fn sources() -> Result<&'static [CellSource], String> {
    static SOURCES: OnceLock<Result<Vec<CellSource>, String>> = OnceLock::new();
    SOURCES
        .get_or_init(|| {
            CELLS
                .iter()
                .map(|(dir, manifest, wasm)| {
                    let spec = cellhost::manifest::parse(manifest)
                        .map_err(|e| format!("go-cells/{dir}: {e}"))?;
                    Ok(CellSource {
                        spec,
                        wasm: Arc::from(*wasm),
                    })
                })
                .collect()
        })
        .as_deref()
        .map_err(Clone::clone)
}

/// Pulp's restart breaker: restarts allowed in its window (a run is far shorter than it).
const MAX_RESTARTS: usize = 5;

fn step(payload: &str) -> Action {
    Action::Step(payload.as_bytes().to_vec())
}

fn plans(setup: &mut Setup) -> BTreeMap<String, Vec<Action>> {
    let mut plans = BTreeMap::new();
    // counter: idle steps and host calls, in a seeded order.
    let steps = setup.derive("counter_steps", 1, 5);
    let calls = setup.derive("counter_calls", 0, 3);
    let mut counter = vec![step(""); steps as usize];
    for k in 0..calls {
        let at = setup.derive(&format!("counter_call{k}_at"), 0, counter.len() as u64);
        counter.insert(
            at as usize,
            Action::Call {
                function: "get".into(),
                args: Vec::new(),
            },
        );
    }
    plans.insert("counter".to_string(), counter);
    let caller = (0..setup.derive("caller_steps", 1, 6))
        .map(
            |k| match setup.derive(&format!("caller_s{k}_calls"), 0, 3) {
                0 => step(""),
                _ => step("counter"),
            },
        )
        .collect();
    plans.insert("caller".to_string(), caller);
    let panicker = (0..setup.derive("panicker_steps", 2, 7))
        .map(
            |k| match setup.derive(&format!("panicker_s{k}_boom"), 0, 2) {
                0 => step("boom"),
                _ => step(""),
            },
        )
        .collect();
    plans.insert("panicker".to_string(), panicker);
    let n = setup.derive("exiter_steps", 1, 4);
    let exit_at = setup.derive("exiter_exit_at", 0, n);
    let exiter = (0..n)
        .map(|k| step(if k == exit_at { "exit" } else { "" }))
        .collect();
    plans.insert("exiter".to_string(), exiter);
    plans
}

impl Scenario for CellsGo {
    fn name(&self) -> &'static str {
        "cells-go"
    }

    fn description(&self) -> &'static str {
        "Go-built cells (counter, caller, panicker, exiter): steps, sibling calls, panics with restarts, exits, shutdown and close"
    }

    fn expected_steps(&self) -> u64 {
        400
    }

    fn kernel_options(&self) -> simkit::KernelOptions {
        kernel_options()
    }

    fn bugs(&self) -> &'static [PlantedBug] {
        BUGS
    }

    fn run(&self, setup: &mut Setup) -> Vec<Violation> {
        let cells = match sources() {
            Ok(cells) => cells,
            Err(e) => return vec![Violation::new("cell-load", e)],
        };
        let max_slice = setup.derive("max_slice", 2_000, 40_000);
        let plans = plans(setup);
        let mut bugs = 0;
        if setup.planted(SKIP_START) {
            bugs |= cellhost::planted::RESTART_WITHOUT_START;
        }
        if setup.planted(KEEP_FAILED) {
            bugs |= cellhost::planted::KEEP_FAILED_INSTANCE;
        }
        let config = HostConfig {
            bugs,
            ..HostConfig::default()
        };
        let ran = run_cells(setup, cells, plans, config, max_slice, 20_000);
        judge(&ran)
    }
}

/// Every oracle of `cells-go` over one run.
fn judge(ran: &Ran) -> Vec<Violation> {
    let mut v: Vec<Violation> = ran
        .load_errors
        .iter()
        .map(|(cell, e)| Violation::new("cell-load", format!("cell {cell}: {e}")))
        .collect();
    v.extend(ran.world.check(&|_| false));
    let none = Vec::new();
    let outcomes = |cell: &str| ran.outcomes.get(cell).unwrap_or(&none);
    let output = ran.world.services.output.borrow();
    let printed = |cell: &str| output.get(cell).cloned().unwrap_or_default();
    let mut counts: Vec<i64> = Vec::new();
    // counter: a count for every step and call, until it shuts down.
    for o in outcomes("counter") {
        match (&o.entry, &o.result) {
            (Entry::Step(_), Ok(Answer::Value(n))) if *n > 0 => counts.push(i64::from(*n)),
            (Entry::Call(_), Ok(Answer::Bytes(b))) if b.len() == 8 => {
                let mut le = [0u8; 8];
                le.copy_from_slice(b);
                counts.push(i64::from_le_bytes(le));
            }
            (Entry::Init | Entry::Shutdown | Entry::Close, Ok(Answer::Done)) => {}
            _ => v.push(mismatch(
                "counter",
                o,
                "a count, or ok for init, shutdown and close",
            )),
        }
    }
    // caller: 0 when idle, a count from counter or TARGET_GONE once counter is shut down.
    for o in outcomes("caller") {
        match (&o.entry, &o.result) {
            (Entry::Step(p), Ok(Answer::Value(0))) if p.is_empty() => {}
            (Entry::Step(p), Ok(Answer::Value(n))) if p == b"counter" && *n > 0 => {
                counts.push(i64::from(*n))
            }
            (Entry::Step(p), Ok(Answer::Value(n)))
                if p == b"counter" && *n == -(call_code::TARGET_GONE as i32) => {}
            (Entry::Init | Entry::Shutdown | Entry::Close, Ok(Answer::Done)) => {}
            _ => v.push(mismatch(
                "caller",
                o,
                "0 idle, a count or TARGET_GONE for a call",
            )),
        }
    }
    let mut by_cell = BTreeMap::new();
    by_cell.insert("counter".to_string(), counts.clone());
    v.extend(check_counts(&by_cell));
    let reported = format!("stdout: counter: shutting down after {}", counts.len());
    if outcomes("counter")
        .iter()
        .any(|o| o.entry == Entry::Shutdown && o.result.is_ok())
        && !printed("counter").contains(&reported)
    {
        v.push(
            Violation::new(
                "cell-outputs",
                format!(
                    "cell counter did not print '{reported}' at shutdown: {:?}",
                    printed("counter")
                ),
            )
            .kind("model-mismatch")
            .object("cell counter".to_string()),
        );
    }
    v.extend(judge_panicker(outcomes("panicker"), &printed("panicker")));
    v.extend(judge_exiter(outcomes("exiter")));
    v
}

fn mismatch(cell: &str, o: &Outcome, want: &str) -> Violation {
    Violation::new(
        "cell-outputs",
        format!("cell {cell}: {o}; the cell's model says {want}"),
    )
    .kind("model-mismatch")
    .object(format!("cell {cell}"))
}

/// A Go panic traps (`unreachable`, after printing the panic).
fn is_panic(r: &Result<Answer, CellError>) -> bool {
    matches!(r, Err(CellError::Trap(t)) if t.message.contains("unreachable"))
}

/// panicker under `restart = "on_crash"`: each panic restarts it (a new instance, initialised
/// once: it answers 1 to an idle step) until Pulp's breaker leaves it failed.
fn judge_panicker(outcomes: &[Outcome], printed: &[String]) -> Vec<Violation> {
    let mut v = Vec::new();
    let mut restarts = 0;
    let mut up = true;
    for o in outcomes {
        let ok = match (&o.entry, &o.result) {
            (Entry::Init, r) => *r == Ok(Answer::Done),
            (Entry::Step(p), r) if p == b"boom" && up => {
                if restarts < MAX_RESTARTS {
                    restarts += 1;
                } else {
                    up = false;
                }
                is_panic(r)
            }
            (Entry::Step(_), r) if up => *r == Ok(Answer::Value(1)),
            (Entry::Step(_), r) => matches!(r, Err(CellError::Failed(Failure::Trap { .. }))),
            (Entry::Shutdown, r) if up => *r == Ok(Answer::Done),
            (Entry::Shutdown, r) => {
                *r == Ok(Answer::Done) || matches!(r, Err(CellError::Failed(_)))
            }
            (Entry::Close, r) => *r == Ok(Answer::Done),
            (Entry::Call(_), _) => false,
        };
        if !ok {
            let want = if up {
                "a trap for boom, 1 (a fresh instance, initialised once) for an idle step"
            } else {
                "the failure of its last panic (restarts spent)"
            };
            v.push(mismatch("panicker", o, want));
        }
    }
    let inits = printed
        .iter()
        .filter(|l| l.as_str() == "stdout: panicker: init #1")
        .count();
    let initialised = outcomes.first().is_some_and(|o| o.result.is_ok());
    if initialised && inits != 1 + restarts {
        v.push(
            Violation::new(
                "cell-outputs",
                format!(
                    "cell panicker printed 'init #1' {inits} times; one instance and {restarts} restarts make {}",
                    1 + restarts
                ),
            )
            .kind("model-mismatch")
            .object("cell panicker".to_string()),
        );
    }
    v
}

/// exiter under `restart = "never"`: 1 per step until `exit`, then its exit code, then the
/// failure for every step after.
fn judge_exiter(outcomes: &[Outcome]) -> Vec<Violation> {
    let mut v = Vec::new();
    let mut exited = false;
    for o in outcomes {
        let ok = match (&o.entry, &o.result) {
            (Entry::Init, r) => *r == Ok(Answer::Done),
            (Entry::Step(p), r) if p == b"exit" && !exited => {
                exited = true;
                *r == Err(CellError::Exited { code: 3 })
            }
            (Entry::Step(_), r) if !exited => *r == Ok(Answer::Value(1)),
            (Entry::Step(_), r) => {
                matches!(r, Err(CellError::Failed(Failure::Exit { code: 3, .. })))
            }
            (Entry::Shutdown, r) => {
                *r == Ok(Answer::Done) || (exited && matches!(r, Err(CellError::Failed(_))))
            }
            (Entry::Close, r) => *r == Ok(Answer::Done),
            (Entry::Call(_), _) => false,
        };
        if !ok {
            let want = if exited {
                "the exit's failure (restart = never)"
            } else {
                "1 per step, Exited { code: 3 } at exit"
            };
            v.push(mismatch("exiter", o, want));
        }
    }
    v
}
