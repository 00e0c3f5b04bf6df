//! `pipe-file`: the guest reads and writes files through the monitor's file relay.
//!
//! Workload (derived per seed; the guest code is `guest_programs::file`, which a bare-metal guest
//! runs too, `sim hw --scenario pipe-file`): 1–3 files, each on its own pipe, opened with
//! `READ|WRITE|CREATE|TRUNCATE`, then a seeded sequence of writes (looping over short writes),
//! absolute seeks and reads, and a close. Files run one after another or concurrently in their
//! own kernel threads. Pipes are closed on the control pipe only at the end, so a pipe's relay
//! can finish long before the guest lets its memory go. Faults: everything `pipe-echo` has, plus
//! the store's short reads and writes and latency.
//!
//! Oracles: each file's request/reply log replayed against a reference file model (every reply
//! one a correct file could give) and the store's final contents; region ownership (no pipe
//! placed over one the guest has not closed); liveness; no panic; no out-of-bounds access.

use crate::pipes::files::SimFiles;
use crate::pipes::net::SimNet;
use crate::pipes::world::{self, Bugs, PipeWorld};
use crate::{PlantedBug, Scenario, Setup, Violation};
use guest_programs::file::{self, Choices, Exchange, FilePlan, Observed, Placement, Shared, path};
use models::files::{FileExchange, check_file};
use models::pipes::{PlacementEvent, check_placements};
use monitor::control_pipe_info;
use monitor::host_pipe::pipe_len;
use simkit::{Ctx, KernelOptions};
use std::collections::BTreeMap;
use std::rc::Rc;

pub struct PipeFile;

const FREE_BEFORE_CLOSE: &str = "pipe-free-before-close";

static BUGS: &[PlantedBug] = &[PlantedBug {
    name: FREE_BEFORE_CLOSE,
    scenario: "pipe-file",
    description: "the monitor frees a pipe's memory when its relay ends, not when the guest closes the pipe",
    mirrors: "Arca PROTOCOL.md §2, §9 (SHM freed while the other side still maps it; wrapped IDs alias)",
    needs_mem: None,
}];

/// The simulation's run-time choices for the file sessions: decisions from the kernel's stream.
#[derive(Clone)]
struct CtxChoices(Ctx);

impl Choices for CtxChoices {
    fn choose(&self, n: u64) -> u64 {
        self.0.choose(n)
    }
}

impl Scenario for PipeFile {
    fn name(&self) -> &'static str {
        "pipe-file"
    }

    fn description(&self) -> &'static str {
        "the guest reads, writes and seeks files through the monitor's file relay (short transfers, deferred pipe close)"
    }

    fn expected_steps(&self) -> u64 {
        3_000
    }

    fn kernel_options(&self) -> KernelOptions {
        world::kernel_options()
    }

    fn bugs(&self) -> &'static [PlantedBug] {
        BUGS
    }

    fn run(&self, setup: &mut Setup) -> Vec<Violation> {
        let plan = Rc::new(file::plan(&mut |name, lo, hi| setup.derive(name, lo, hi)));
        let mut bugs = Bugs::default();
        if setup.planted(FREE_BEFORE_CLOSE) {
            bugs.monitor |= monitor::planted::FREE_BEFORE_GUEST_CLOSE;
        }
        let store = Rc::new(SimFiles::new(setup.ctx()));
        let observed: Shared = Rc::default();
        let (o, p) = (observed.clone(), plan.clone());
        let world = PipeWorld::boot(
            setup,
            64 * 1024,
            bugs,
            store.clone(),
            SimNet::none(),
            move |env| {
                let choices = CtxChoices(env.ctx.clone());
                file::run(env, choices, control_pipe_info(), p, o)
            },
        );

        setup.run();
        let observed = observed.borrow();
        let mut v = world.common_checks(&observed.errors);
        v.extend(judge_file(&plan, &observed, &store.contents()));
        v
    }
}

/// This workload's oracles, from its plan, what the guest observed and the files' final
/// contents (by path): each file's log replayed against the reference file model and compared
/// with what the store holds, then region ownership. Shared with runs outside the simulation,
/// which judge real files the same way.
pub fn judge_file(
    plan: &FilePlan,
    observed: &Observed,
    contents: &BTreeMap<String, Vec<u8>>,
) -> Vec<Violation> {
    let mut v = Vec::new();
    for i in 0..plan.ops.len() {
        let log: Vec<FileExchange> = observed
            .logs
            .get(&i)
            .map(|log| log.iter().map(file_exchange).collect())
            .unwrap_or_default();
        v.extend(check_file(
            &path(i),
            &log,
            contents.get(&path(i)).map(Vec::as_slice),
        ));
    }
    let placements: Vec<PlacementEvent> = observed.placements.iter().map(placement_event).collect();
    v.extend(check_placements(&placements));
    v
}

/// The reference model's view of one exchange the guest logged.
pub fn file_exchange(e: &Exchange) -> FileExchange {
    match e {
        Exchange::Write { data, wrote } => FileExchange::Write {
            data: data.clone(),
            wrote: *wrote,
        },
        Exchange::Read { len, data } => FileExchange::Read {
            len: *len,
            data: data.clone(),
        },
        Exchange::SeekStart { offset, pos } => FileExchange::SeekStart {
            offset: *offset,
            pos: *pos,
        },
    }
}

/// The region-ownership oracle's view of one placement the guest saw. A placement decoded from
/// an untrusted report has a span that fits in a u64 (`guest_programs::file::decode_placements`).
pub fn placement_event(p: &Placement) -> PlacementEvent {
    match *p {
        Placement::Ready {
            id,
            offset,
            ring_size,
        } => PlacementEvent::Ready {
            id,
            offset,
            len: pipe_len(ring_size),
        },
        Placement::Closed { id } => PlacementEvent::Closed { id },
    }
}
