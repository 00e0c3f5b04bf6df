//! `cells-siblings`: several cells step and call each other through the host under preemption.
//!
//! Workload (derived per seed): 2–4 `node` cells with seeded `depends_on` edges (and one
//! provides/consumes pair); each cell has a stepper actor that initialises it and takes 3–12
//! steps, each an idle tick or a call path of 1–3 hops over the cells (cycles such as a -> b -> a
//! included, and now and then an unknown cell); an external actor makes host-initiated calls.
//! When every stepper is done, the cells are shut down and closed. Faults: fuel slices of 1–60
//! units (an idle tick costs about 20), each a scheduling point, so cells are preempted mid-step and entries interleave.
//!
//! Oracles: lifecycle, exclusive entry, every sibling call answered, and a heap that returns to
//! its top after every entry (`models::cells`, from the engine binding's log); no step fails and
//! every code a path returns is one the ABI defines; every count a cell answered (idle ticks and
//! leaf calls) is explained by one serial order of its inputs: the counts seen are exactly
//! 1..=n (a reference model of the cell, so the same inputs give the same outputs); liveness (a
//! call cycle must fail with a code, never deadlock); no panic.

use crate::cells::world::CellWorld;
use crate::cells::{check_counts, envelope, path_value};
use crate::{PlantedBug, Scenario, Setup, Violation};
use cellhost::abi::call_code;
use cellhost::engine::Engine;
use cellhost::{CellError, CellHost, HostConfig, Pacing};
use simkit::KernelOptions;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

pub struct CellsSiblings;

const REENTRANT_DEADLOCK: &str = "cells-reentrant-deadlock";
const LEAK_CALL_RESPONSE: &str = "cells-leak-call-response";
const IDLE_TICK_ALLOC: &str = "cells-idle-tick-alloc";

static BUGS: &[PlantedBug] = &[
    PlantedBug {
        name: REENTRANT_DEADLOCK,
        scenario: "cells-siblings",
        description: "no cycle detection: a call that closes a cycle of cells (A -> B -> A) waits on a lock its own chain holds",
        mirrors: "Pulp P1: A->B->A deadlock on the module mutex (b644682; later the 250 ms / 30 s TryLock grace)",
        needs_mem: None,
    },
    PlantedBug {
        name: LEAK_CALL_RESPONSE,
        scenario: "cells-siblings",
        description: "the host never frees the response buffer a sibling call allocated in the target",
        mirrors: "Pulp P3: v0.2 Cell.Call never frees the response (fixed in 8bf9289)",
        needs_mem: None,
    },
    PlantedBug {
        name: IDLE_TICK_ALLOC,
        scenario: "cells-siblings",
        description: "every idle tick allocates a fresh envelope buffer in the cell and never frees it",
        mirrors: "Pulp P4: idle ticks exhaust the guest allocator (fixed in 82435df by reusing one buffer)",
        needs_mem: None,
    },
];

/// What the actors saw.
#[derive(Default)]
pub struct Observed {
    /// Counts answered by each cell (idle ticks, and leaf calls whose value reached a caller).
    pub counts: BTreeMap<String, Vec<i64>>,
    pub errors: Vec<String>,
    pub codes: Vec<(String, i64)>,
}

/// One run's workload, derived from the run's decisions (the simulation's, or a hardware run's
/// seeded source), so both forms of the scenario run the same kind of workload.
pub struct SiblingsPlan {
    pub names: Vec<&'static str>,
    pub manifests: Vec<String>,
    /// Each cell's step payloads ("" idle, else a call path).
    pub steps: Vec<Vec<String>>,
    /// Cells the host calls from outside, after a pause.
    pub external: Vec<String>,
    pub external_pause_ns: u64,
}

/// Derives a workload; `derive(name, lo, hi)` draws (and records) an option in `lo..=hi`.
pub fn plan(derive: &mut dyn FnMut(&str, u64, u64) -> u64) -> SiblingsPlan {
    let n = derive("cells", 2, 4) as usize;
    let names = &NAMES[..n];
    let mut manifests = Vec::new();
    for (i, me) in names.iter().enumerate() {
        let mut deps = Vec::new();
        for (j, other) in names.iter().enumerate() {
            // The ring i -> i+1 always, so every cell is reachable; other edges seeded.
            let seeded = j != i && derive(&format!("{me}_dep_{other}"), 0, 2) > 0;
            if seeded || (j != i && j == (i + 1) % n) {
                deps.push(format!("\"{other}\""));
            }
        }
        let consumes = if i == 0 { "consumes = [\"svc\"]\n" } else { "" };
        let provides = if i == n - 1 {
            "provides = [\"svc\"]\n"
        } else {
            ""
        };
        manifests.push(format!(
            "name = \"{me}\"\nversion = \"1\"\ndepends_on = [{}]\n{consumes}{provides}",
            deps.join(", ")
        ));
    }
    let steps = names
        .iter()
        .map(|me| {
            let steps = derive(&format!("{me}_steps"), 3, 12);
            (0..steps)
                .map(|s| {
                    let hops = derive(&format!("{me}_s{s}_hops"), 0, 3);
                    (0..hops)
                        .map(|h| {
                            let pick = derive(&format!("{me}_s{s}_h{h}"), 0, n as u64);
                            names
                                .get(pick as usize)
                                .copied()
                                .unwrap_or("zz")
                                .to_string()
                        })
                        .collect::<Vec<_>>()
                        .join("/")
                })
                .collect()
        })
        .collect();
    let external = (0..derive("external_calls", 0, 3))
        .map(|k| {
            let pick = derive(&format!("external{k}"), 0, n as u64 - 1);
            names[pick as usize].to_string()
        })
        .collect();
    let external_pause_ns = derive("external_pause_ns", 0, 5_000);
    SiblingsPlan {
        names: names.to_vec(),
        manifests,
        steps,
        external,
        external_pause_ns,
    }
}

/// The workload-level oracles: no step failed, every code is one a path may answer, and the
/// counts each cell answered are one serial order of its inputs.
pub fn judge(observed: &Observed) -> Vec<Violation> {
    let mut v: Vec<Violation> = observed
        .errors
        .iter()
        .map(|e| Violation::new("cell-error", e.clone()))
        .collect();
    // Healthy cells never trap, so TARGET_ERROR is not among them.
    const CODES: [u32; 4] = [
        call_code::UNKNOWN_TARGET,
        call_code::TARGET_GONE,
        call_code::NOT_AUTHORIZED,
        call_code::REENTRANT,
    ];
    for (what, code) in &observed.codes {
        if !CODES.iter().any(|c| i64::from(*c) == -code) {
            v.push(Violation::new(
                "cell-codes",
                format!("{what} returned {code}, not a pulp_call code"),
            ));
        }
    }
    v.extend(check_counts(&observed.counts));
    v
}

const NAMES: [&str; 4] = ["a", "b", "c", "d"];

impl Scenario for CellsSiblings {
    fn name(&self) -> &'static str {
        "cells-siblings"
    }

    fn description(&self) -> &'static str {
        "2-4 WASM cells step and call each other along seeded paths (cycles included) under fuel-slice preemption"
    }

    fn expected_steps(&self) -> u64 {
        // Measured mean: 113 steps per run (`sim bench --scenario cells-siblings`).
        120
    }

    fn kernel_options(&self) -> KernelOptions {
        crate::cells::kernel_options()
    }

    fn bugs(&self) -> &'static [PlantedBug] {
        BUGS
    }

    fn run(&self, setup: &mut Setup) -> Vec<Violation> {
        let SiblingsPlan {
            names,
            manifests,
            steps: plans,
            external,
            external_pause_ns: pause,
        } = plan(&mut |name, lo, hi| setup.derive(name, lo, hi));
        let names = &names[..];
        let max_slice = 60;
        let mut bugs = 0;
        if setup.planted(REENTRANT_DEADLOCK) {
            bugs |= cellhost::planted::NO_CYCLE_CHECK;
        }
        if setup.planted(LEAK_CALL_RESPONSE) {
            bugs |= cellhost::planted::LEAK_CALL_RESPONSE;
        }
        if setup.planted(IDLE_TICK_ALLOC) {
            bugs |= cellhost::planted::IDLE_TICK_ALLOC;
        }
        let ctx = setup.ctx();
        let world = CellWorld::new(
            &ctx,
            max_slice,
            HostConfig {
                bugs,
                ..HostConfig::default()
            },
        );
        let mut v = Vec::new();
        for m in &manifests {
            if let Err(e) = world.load(m, "node") {
                v.push(Violation::new("cell-load", e));
            }
        }
        let observed: Rc<RefCell<Observed>> = Rc::default();
        let mut steppers = Vec::new();
        for (me, plan) in names.iter().zip(plans) {
            let (host, o, c, me) = (world.host.clone(), observed.clone(), ctx.clone(), *me);
            steppers.push(ctx.spawn(&format!("step-{me}"), async move {
                run_stepper(&host, me, &plan, &o, || c.now()).await;
            }));
        }
        {
            let (host, o, c) = (world.host.clone(), observed.clone(), ctx.clone());
            steppers.push(ctx.spawn("external", async move {
                c.sleep(pause).await;
                run_external_calls(&host, &external, &o).await;
            }));
        }
        {
            let (host, o, c) = (world.host.clone(), observed.clone(), ctx.clone());
            let names: Vec<&'static str> = names.to_vec();
            ctx.spawn("finisher", async move {
                for s in steppers {
                    c.join(s).await;
                }
                finish_all(&host, &names, &o).await;
            });
        }
        setup.run();
        v.extend(world.check(&|_| true));
        v.extend(judge(&observed.borrow()));
        v
    }
}

/// One cell's stepper: initialise it, then take its steps in order (`now` stamps envelopes).
pub async fn run_stepper<E: Engine, P: Pacing>(
    host: &CellHost<E, P>,
    me: &str,
    steps: &[String],
    o: &RefCell<Observed>,
    now: impl Fn() -> u64,
) {
    if let Err(e) = host.init(me).await {
        o.borrow_mut().errors.push(format!("init cell {me}: {e}"));
        return;
    }
    for (k, p) in steps.iter().enumerate() {
        match host.step(me, &envelope(k as u64, now(), p)).await {
            Ok(value) => {
                host.pacing()
                    .trace("stepped", format_args!("{me} '{p}' -> {value}"));
                record(o, me, p, i64::from(value));
            }
            Err(e) => o
                .borrow_mut()
                .errors
                .push(format!("step cell {me} '{p}': {e}")),
        }
    }
}

/// Host-initiated calls into each target (a count comes back as 8 bytes).
pub async fn run_external_calls<E: Engine, P: Pacing>(
    host: &CellHost<E, P>,
    targets: &[String],
    o: &RefCell<Observed>,
) {
    for target in targets {
        match host.call(target, "get", b"").await {
            Ok(bytes) => match <[u8; 8]>::try_from(bytes.as_slice()) {
                Ok(b) => record(o, "host", target, i64::from_le_bytes(b)),
                Err(_) => o
                    .borrow_mut()
                    .errors
                    .push(format!("call cell {target}: {} bytes", bytes.len())),
            },
            // Calling a cell before its stepper initialised it is allowed to fail.
            Err(CellError::NotInitialized) => {}
            Err(e) => o
                .borrow_mut()
                .errors
                .push(format!("call cell {target}: {e}")),
        }
    }
}

/// Shuts down and closes every cell once the steppers are done.
pub async fn finish_all<E: Engine, P: Pacing>(
    host: &CellHost<E, P>,
    names: &[&str],
    o: &RefCell<Observed>,
) {
    for me in names {
        let shut = host.shutdown(me).await;
        let closed = host.close(me).await;
        for (what, r) in [("shutdown", shut), ("close", closed)] {
            match r {
                Ok(()) | Err(CellError::NotInitialized) => {}
                Err(e) => o.borrow_mut().errors.push(format!("{what} {me}: {e}")),
            }
        }
    }
}

/// Files a step's or call's value: a count from the path's last cell, or a code.
pub fn record(o: &RefCell<Observed>, me: &str, path: &str, value: i64) {
    let mut o = o.borrow_mut();
    match path_value(me, path, value) {
        Ok((cell, count)) => o.counts.entry(cell).or_default().push(count),
        Err(code) => o.codes.push((format!("cell {me} '{path}'"), code)),
    }
}
