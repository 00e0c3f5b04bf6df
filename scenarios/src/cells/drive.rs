//! Driving a set of real cells (modules built by real toolchains, loaded from their manifests)
//! under the simulator: one actor per cell runs `pulp_init`, its planned steps and
//! host-initiated calls, then `pulp_shutdown` and `close` (twice), while the sibling calls the
//! cells make go wherever they go. Every answer is kept, in each cell's order, for the
//! scenario's reference models; the engine binding's log feeds the `models::cells` oracles.
//! `cells-go` and `sim cells DIR` both run through here.

use crate::Setup;
use crate::cells::world::CellWorld;
use cellhost::abi::StepEnvelope;
use cellhost::manifest::CellSpec;
use cellhost::{CellError, HostConfig};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;

/// A cell to load: its manifest and module.
#[derive(Clone)]
pub struct CellSource {
    pub spec: CellSpec,
    pub wasm: Arc<[u8]>,
}

/// What a cell's actor does between init and shutdown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A `pulp_step` with this payload.
    Step(Vec<u8>),
    /// A host-initiated call of the cell's `pulp_on_call`.
    Call { function: String, args: Vec<u8> },
}

/// The entry an outcome answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Init,
    Step(Vec<u8>),
    Call(String),
    Shutdown,
    Close,
}

/// What an entry answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Done,
    Value(i32),
    Bytes(Vec<u8>),
}

#[derive(Clone, Debug)]
pub struct Outcome {
    pub entry: Entry,
    pub result: Result<Answer, CellError>,
}

/// A payload as a trace shows it.
pub struct Shown<'a>(pub &'a [u8]);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in String::from_utf8_lossy(self.0).chars() {
            write!(f, "{}", c.escape_debug())?;
        }
        Ok(())
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Init => write!(f, "init"),
            Entry::Step(p) => write!(f, "step '{}'", Shown(p)),
            Entry::Call(function) => write!(f, "call {function}"),
            Entry::Shutdown => write!(f, "shutdown"),
            Entry::Close => write!(f, "close"),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.result {
            Ok(Answer::Done) => write!(f, "{} -> ok", self.entry),
            Ok(Answer::Value(v)) => write!(f, "{} -> {v}", self.entry),
            Ok(Answer::Bytes(b)) => write!(f, "{} -> {} bytes", self.entry, b.len()),
            Err(e) => write!(f, "{} -> error: {e}", self.entry),
        }
    }
}

/// Outcomes by cell, each in the order its actor made the entries.
pub type Outcomes = BTreeMap<String, Vec<Outcome>>;

/// A run of a cell set.
pub struct Ran {
    pub world: CellWorld,
    pub outcomes: Outcomes,
    /// Cells that did not load, with why.
    pub load_errors: Vec<(String, CellError)>,
}

/// Loads `cells` (in order) into a new world, spawns an actor per loaded cell that runs its
/// plan, and runs the simulation to its end. Each actor first waits a seeded time (up to
/// `max_delay_ns`), so cells start in different orders.
pub fn run_cells(
    setup: &mut Setup,
    cells: &[CellSource],
    mut plans: BTreeMap<String, Vec<Action>>,
    config: HostConfig,
    max_slice: u64,
    max_delay_ns: u64,
) -> Ran {
    let delays: Vec<u64> = cells
        .iter()
        .map(|c| setup.derive(&format!("{}_delay_ns", c.spec.name), 0, max_delay_ns))
        .collect();
    let ctx = setup.ctx();
    let world = CellWorld::new(&ctx, max_slice, config);
    let mut load_errors = Vec::new();
    let outcomes: Rc<RefCell<Outcomes>> = Rc::default();
    for (source, delay) in cells.iter().zip(delays) {
        let name = source.spec.name.clone();
        if let Err(e) = world.load_bytes(source.spec.clone(), &source.wasm) {
            load_errors.push((name, e));
            continue;
        }
        let plan = plans.remove(&name).unwrap_or_default();
        let (host, out, c) = (world.host.clone(), outcomes.clone(), ctx.clone());
        ctx.spawn(&format!("cell-{name}"), async move {
            let record = |entry: Entry, result: Result<Answer, CellError>| {
                let o = Outcome { entry, result };
                c.trace("cell-entry", format_args!("{name} {o}"));
                out.borrow_mut().entry(name.clone()).or_default().push(o);
            };
            c.sleep(delay).await;
            let r = host.init(&name).await.map(|()| Answer::Done);
            record(Entry::Init, r);
            for (k, action) in plan.into_iter().enumerate() {
                match action {
                    Action::Step(payload) => {
                        let envelope = StepEnvelope {
                            call_number: k as u64,
                            wall_time_ns: c.now(),
                            payload: payload.clone(),
                        };
                        let r = host.step(&name, &envelope).await.map(Answer::Value);
                        record(Entry::Step(payload), r);
                    }
                    Action::Call { function, args } => {
                        let r = host.call(&name, &function, &args).await.map(Answer::Bytes);
                        record(Entry::Call(function), r);
                    }
                }
            }
            let r = host.shutdown(&name).await.map(|()| Answer::Done);
            record(Entry::Shutdown, r);
            for _ in 0..2 {
                let r = host.close(&name).await.map(|()| Answer::Done);
                record(Entry::Close, r);
            }
        });
    }
    setup.run();
    let outcomes = outcomes.take();
    Ran {
        world,
        outcomes,
        load_errors,
    }
}
