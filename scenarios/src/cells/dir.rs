//! `sim cells DIR`: a user's own cells, each a directory under DIR holding `pulp.cell.toml` and
//! the module it names, run under the simulator through the same driver and oracles as
//! `cells-go`.
//!
//! Workload (derived per seed): every cell, after a seeded delay, runs `pulp_init`, then K
//! seeded entries, each an idle step, a step whose payload names another loaded cell (a cell
//! that calls the sibling its payload names, as Pulp's routers do, makes that call), a step
//! with a seeded four-letter word, or a host-initiated call of its `pulp_on_call`; then
//! `pulp_shutdown` and two closes. Faults: fuel slices of 1 to a seeded 2,000–40,000 units,
//! each a scheduling point.
//!
//! Oracles: the engine binding's log of every instance (`models::cells`: start-up before any
//! Pulp entry, nothing after a failed export until a new instance, nothing before init or
//! after shutdown, exclusive entry, every sibling call answered, nothing dropped while
//! running); close answers ok, twice; liveness and no panic. What a user's cell answers is
//! its own business: any typed error is allowed.
//!
//! A run is named `cells:K:DIR` (DIR absolute), so a replay file names the cells it ran, and
//! the catalogue's resolver ([`resolve`]) makes the scenario again from the name.

use crate::cells::drive::{Action, Answer, CellSource, Entry, run_cells};
use crate::cells::kernel_options;
use crate::cells::world::{Logs, ObservedEngine};
use crate::{Scenario, Setup, Violation};
use cellhost::engine::wasmi::WasmiEngine;
use cellhost::{CellHost, HostConfig, HostServices, Pacing, Registry};
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

/// How a cells-directory scenario's name begins.
pub const PREFIX: &str = "cells:";

/// A directory of cells as a scenario.
pub struct CellsDir {
    name: &'static str,
    steps: u64,
    cells: Vec<CellSource>,
}

/// The scenario name of `steps` entries per cell over the cells under `dir` (absolute).
pub fn scenario_name(dir: &Path, steps: u64) -> String {
    format!("{PREFIX}{steps}:{}", dir.display())
}

/// Reads every cell under `dir` and checks that each loads (manifest, module, imports, start
/// function) on a host of its own; the error is one line naming the problem.
pub fn load(dir: &Path, steps: u64) -> Result<CellsDir, String> {
    let dir = std::path::absolute(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !dir.is_dir() {
        return Err(format!("{}: not a directory", dir.display()));
    }
    let dirs = cellhost::cell_dirs(&dir).map_err(|e| e.to_string())?;
    if dirs.is_empty() {
        return Err(format!(
            "{}: no cell directories (a subdirectory holding pulp.cell.toml)",
            dir.display()
        ));
    }
    // The engine the runs use, so that the module compiled here and its start image serve
    // the runs in this thread.
    let host = CellHost::new(
        ObservedEngine::new(WasmiEngine::default(), Logs::default()),
        Registry::standard(),
        Rc::new(Quiet),
        Quiet,
        HostConfig::default(),
    );
    let mut cells = Vec::new();
    for d in dirs {
        let (spec, wasm) =
            cellhost::read_cell_dir(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        host.load(spec.clone(), &wasm)
            .map_err(|e| format!("{}: {e}", d.display()))?;
        cells.push(CellSource {
            spec,
            wasm: Arc::from(wasm),
        });
    }
    let name: &'static str = Box::leak(scenario_name(&dir, steps).into_boxed_str());
    Ok(CellsDir { name, steps, cells })
}

/// The scenario a `cells:K:DIR` name stands for (made once per process and name).
pub fn resolve(name: &str) -> Option<&'static dyn Scenario> {
    let rest = name.strip_prefix(PREFIX)?;
    let (steps, dir) = rest.split_once(':')?;
    let steps: u64 = steps.parse().ok()?;
    static MADE: Mutex<BTreeMap<String, &'static CellsDir>> = Mutex::new(BTreeMap::new());
    let mut made = MADE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = made.get(name) {
        return Some(*s);
    }
    let scenario: &'static CellsDir = Box::leak(Box::new(load(Path::new(dir), steps).ok()?));
    made.insert(name.to_string(), scenario);
    Some(scenario)
}

impl CellsDir {
    pub fn cell_names(&self) -> Vec<String> {
        self.cells.iter().map(|c| c.spec.name.clone()).collect()
    }

    fn plans(&self, setup: &mut Setup) -> BTreeMap<String, Vec<Action>> {
        let names = self.cell_names();
        let mut plans = BTreeMap::new();
        for me in &names {
            let plan = (0..self.steps)
                .map(|k| match setup.derive(&format!("{me}_s{k}"), 0, 5) {
                    0 => Action::Step(Vec::new()),
                    1 => Action::Call {
                        function: "get".into(),
                        args: Vec::new(),
                    },
                    2 | 3 => {
                        let pick =
                            setup.derive(&format!("{me}_s{k}_cell"), 0, names.len() as u64 - 1);
                        Action::Step(names[pick as usize].as_bytes().to_vec())
                    }
                    _ => {
                        let mut w = setup.derive(&format!("{me}_s{k}_word"), 0, 26u64.pow(4) - 1);
                        let word = (0..4)
                            .map(|_| {
                                let c = b'a' + (w % 26) as u8;
                                w /= 26;
                                c
                            })
                            .collect();
                        Action::Step(word)
                    }
                })
                .collect();
            plans.insert(me.clone(), plan);
        }
        plans
    }
}

impl Scenario for CellsDir {
    fn name(&self) -> &'static str {
        self.name
    }

    fn description(&self) -> &'static str {
        "a directory of cells: init, seeded steps and calls, shutdown and close, under the cell oracles"
    }

    fn expected_steps(&self) -> u64 {
        100 * self.steps.max(1) * self.cells.len().max(1) as u64
    }

    fn kernel_options(&self) -> simkit::KernelOptions {
        kernel_options()
    }

    fn run(&self, setup: &mut Setup) -> Vec<Violation> {
        let max_slice = setup.derive("max_slice", 2_000, 40_000);
        let plans = self.plans(setup);
        let ran = run_cells(
            setup,
            &self.cells,
            plans,
            HostConfig::default(),
            max_slice,
            20_000,
        );
        let mut v: Vec<Violation> = ran
            .load_errors
            .iter()
            .map(|(cell, e)| Violation::new("cell-load", format!("cell {cell}: {e}")))
            .collect();
        v.extend(ran.world.check(&|_| false));
        for (cell, outcomes) in &ran.outcomes {
            for o in outcomes {
                if o.entry == Entry::Close && o.result != Ok(Answer::Done) {
                    v.push(
                        Violation::new("cell-lifecycle", format!("cell {cell}: {o}"))
                            .kind("close-failed")
                            .object(format!("cell {cell}")),
                    );
                }
            }
        }
        v
    }
}

/// Services and pacing for the trial load: start-up runs in its own fixed environment, so
/// nothing here is reached but a trace line.
struct Quiet;

impl HostServices for Quiet {
    fn now_ns(&self) -> u64 {
        1
    }
    fn entropy(&self, buf: &mut [u8]) {
        buf.fill(0);
    }
    fn log(&self, _cell: &str, _message: &str) {}
    fn sleep(&self, _ns: u64) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin(std::future::ready(()))
    }
    fn kv_get(&self, _cell: &str, _key: &[u8]) -> Option<Vec<u8>> {
        None
    }
    fn kv_put(&self, _cell: &str, _key: &[u8], _value: &[u8]) {}
    fn send(&self, _from: &str, _to: &str, _message: &[u8]) -> bool {
        false
    }
    fn recv(&self, _cell: &str) -> Option<Vec<u8>> {
        None
    }
}

impl Pacing for Quiet {
    fn fuel_slice(&self) -> u64 {
        1_000_000
    }
    fn preempt(&self) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin(std::future::ready(()))
    }
    fn trace(&self, _event: &str, _details: fmt::Arguments<'_>) {}
}

/// The directory a `cells:K:DIR` name runs, if it is one.
pub fn dir_of(name: &str) -> Option<PathBuf> {
    let (_, dir) = name.strip_prefix(PREFIX)?.split_once(':')?;
    Some(PathBuf::from(dir))
}
