//! The Cap'n Proto RPC scenarios: our engine (`captp`) in 2–3 vats over the simulated vat
//! network, driven by a mirage-style workload, judged by the wire checker, the E-order oracle
//! with its shadow reference graph, and quiescence.
//!
//! - `rpc-two-party`: two vats, each with the other's bootstrap (mirage/capnp-rpc#59's
//!   topology).
//! - `rpc-three-vat`: vat 0 linked to vats 1 and 2, no link between 1 and 2: capabilities
//!   crossing are proxied by vat 0.
//! - `rpc-handoff`: three vats, fully linked, with three-party handoff: a capability hosted by
//!   a third vat is handed over directly (Provide/Accept, with a vine and the accept embargo).
//! - `rpc-vs-capnp-rpc`: our engine against the capnp-rpc crate (`vs_capnp/`): what the
//!   oracles find at capnp-rpc's door is reported as a finding about that crate, not a
//!   violation.
//!
//! Faults in every scenario: seeded delivery interleaving and delays; in the `faults` runs,
//! connection loss and vat restarts.
//!
//! Every scenario runs the same probe application (`app/`) over the same link (`link.rs`),
//! drawing its actions from a weighted table (`mix.rs`); `world.rs` is the workload of our
//! vats among themselves over their network (`net.rs`), `vs_capnp/` the duel with capnp-rpc.

mod app;
mod link;
mod mix;
mod net;
pub mod observe;
mod vs_capnp;
mod waits;
mod world;

use crate::{PlantedBug, Scenario, Setup, Violation};
use captp::{RpcBug, VatConfig, VatId};
use mix::Mix;
use simkit::KernelOptions;
pub use vs_capnp::VsCapnpRpc;
use world::{Action, World};

/// Which vats are linked, and whether they do three-party handoff.
#[derive(Clone, Debug)]
pub struct Links {
    pub vats: u32,
    pub pairs: Vec<(VatId, VatId)>,
    pub third_party: bool,
}

impl Links {
    pub fn pairs(&self) -> Vec<(VatId, VatId)> {
        self.pairs.clone()
    }

    pub fn peers_of(&self, v: VatId) -> Vec<VatId> {
        self.pairs
            .iter()
            .filter_map(|&(a, b)| {
                if a == v {
                    Some(b)
                } else if b == v {
                    Some(a)
                } else {
                    None
                }
            })
            .collect()
    }
}

/// How an RPC scenario's world is shaped.
pub struct RpcShape {
    pub name: &'static str,
    pub description: &'static str,
    pub links: fn() -> Links,
    pub faults: bool,
    /// How much more often than the base mix the echo action runs: the proxied topology
    /// needs the loopback pattern through the hub often to reach its forwarding races.
    pub echo_bias: u64,
    /// The range of workload steps per run.
    pub steps: (u64, u64),
    pub bugs: &'static [PlantedBug],
    pub goals: &'static [harness::Goal],
}

fn two_party() -> Links {
    Links {
        vats: 2,
        pairs: vec![(0, 1)],
        third_party: false,
    }
}

fn three_vat() -> Links {
    Links {
        vats: 3,
        pairs: vec![(0, 1), (0, 2)],
        third_party: false,
    }
}

fn handoff() -> Links {
    Links {
        vats: 3,
        pairs: vec![(0, 1), (0, 2), (1, 2)],
        third_party: true,
    }
}

macro_rules! bug {
    ($name:expr, $scenario:expr, $desc:expr, $mirrors:expr) => {
        PlantedBug {
            name: $name,
            scenario: $scenario,
            description: $desc,
            mirrors: $mirrors,
            needs_mem: None,
        }
    };
}

static TWO_PARTY_BUGS: &[PlantedBug] = &[
    bug!(
        "rpc-skip-loopback-embargo",
        "rpc-two-party",
        "a promise that resolves back into the caller's vat is not embargoed",
        "mirage/capnp-rpc PR #20 calibration (local-embargo check disabled); capnproto commit 6f77d092"
    ),
    bug!(
        "rpc-no-recursive-embargo",
        "rpc-two-party",
        "a promise resolving to another promise of the same peer does not pass on that calls went through it, so no embargo is raised when that one resolves back",
        "mirage/capnp-rpc#78"
    ),
    bug!(
        "rpc-disembargo-non-loopback",
        "rpc-two-party",
        "a disembargo is sent for resolutions that do not loop back (errors, null, peer-hosted)",
        "go-capnp#128 = capnproto-rust#117; capnproto commits 1cdcc24b, d4cd01e9"
    ),
    bug!(
        "rpc-question-reuse",
        "rpc-two-party",
        "a question ID is reused as soon as its Return arrives, before the Finish is sent",
        "rpc.capnp question-ID rule; go-capnp lifecycle_oracle_test (question retirement)"
    ),
    bug!(
        "rpc-release-off-by-one",
        "rpc-two-party",
        "Release gives back one reference fewer than were received",
        "rpc.capnp reference-count rule; go-capnp lifecycle oracle (Release never exceeding the count)"
    ),
];

static THREE_VAT_BUGS: &[PlantedBug] = &[bug!(
    "rpc-forward-to-latest",
    "rpc-three-vat",
    "a call arriving from a peer skips to the latest resolution of its target, past the embargo on the path it named",
    "mirage/capnp-rpc#59 (fixed by \"forward to the named destination; re-embargo when needed\"); the C++ Tribble 4-way race"
)];

static HANDOFF_BUGS: &[PlantedBug] = &[bug!(
    "rpc-accept-without-embargo",
    "rpc-handoff",
    "Accept is sent without an embargo although calls went to the capability through the introducer",
    "capnproto PR #2121 (\"does not implement embargoes, so e-order may be violated\"; fixed in #2122); go-capnp#597"
)];

pub static TWO_PARTY: RpcShape = RpcShape {
    name: "rpc-two-party",
    description: "Cap'n Proto RPC: two vats with each other's bootstrap, pipelining, embargoes, tail calls, faults",
    links: two_party,
    faults: true,
    echo_bias: 1,
    steps: (40, 160),
    bugs: TWO_PARTY_BUGS,
    goals: observe::GOALS,
};

pub static THREE_VAT: RpcShape = RpcShape {
    name: "rpc-three-vat",
    description: "Cap'n Proto RPC: three vats, capabilities proxied through vat 0, faults",
    links: three_vat,
    faults: true,
    echo_bias: 3,
    steps: (60, 240),
    bugs: THREE_VAT_BUGS,
    goals: observe::GOALS,
};

pub static HANDOFF: RpcShape = RpcShape {
    name: "rpc-handoff",
    description: "Cap'n Proto RPC: three vats with three-party handoff (Provide/Accept, vine, accept embargo), faults",
    links: handoff,
    faults: true,
    echo_bias: 1,
    steps: (40, 160),
    bugs: HANDOFF_BUGS,
    goals: observe::HANDOFF_GOALS,
};

fn planted(setup: &Setup) -> Option<RpcBug> {
    [
        ("rpc-forward-to-latest", RpcBug::ForwardToLatest),
        ("rpc-skip-loopback-embargo", RpcBug::SkipLoopbackEmbargo),
        ("rpc-no-recursive-embargo", RpcBug::NoRecursiveEmbargo),
        ("rpc-disembargo-non-loopback", RpcBug::DisembargoNonLoopback),
        ("rpc-accept-without-embargo", RpcBug::AcceptWithoutEmbargo),
        ("rpc-question-reuse", RpcBug::QuestionReuseBeforeFinish),
        ("rpc-release-off-by-one", RpcBug::ReleaseOffByOne),
    ]
    .into_iter()
    .find(|(name, _)| setup.planted(name))
    .map(|(_, bug)| bug)
}

impl Scenario for RpcShape {
    fn name(&self) -> &'static str {
        self.name
    }

    fn description(&self) -> &'static str {
        self.description
    }

    fn expected_steps(&self) -> u64 {
        200
    }

    fn kernel_options(&self) -> KernelOptions {
        KernelOptions {
            buggify: false,
            ..KernelOptions::default()
        }
    }

    fn bugs(&self) -> &'static [PlantedBug] {
        self.bugs
    }

    fn goals(&self) -> &'static [harness::Goal] {
        self.goals
    }

    fn run(&self, setup: &mut Setup) -> Vec<Violation> {
        let links = (self.links)();
        let steps = setup.derive("rpc_steps", self.steps.0, self.steps.1);
        let max_delay = setup.derive("rpc_max_delay_us", 0, 3) * 1_000;
        let bug = planted(setup);
        let configs = (0..links.vats)
            .map(|_| VatConfig {
                third_party_handoff: links.third_party,
                bug,
            })
            .collect();
        // Swarm testing: each run scales every action's weight by 1–4 (delivery, calls,
        // answers, bootstrap and echo, without which a run does little across vats) or 0–4
        // (the rest), so some runs leave whole actions out.
        let mix = Mix::new(&Action::BASE, |a| {
            let lo = match a {
                Action::Deliver
                | Action::Call
                | Action::Answer
                | Action::Bootstrap
                | Action::Echo => 1,
                _ => 0,
            };
            let bias = if a == Action::Echo { self.echo_bias } else { 1 };
            setup.derive(&format!("rpc_mix_{}", a.name()), lo, 4) * bias
        });
        // Asymmetric links: each direction's share of the deliveries is 1–8, so in some runs
        // one direction lags far behind the other (the races embargoes exist for).
        let speeds = links
            .pairs()
            .into_iter()
            .flat_map(|(a, b)| [(a, b), (b, a)])
            .map(|(from, to)| {
                let speed = setup.derive(&format!("rpc_speed_{from}_{to}"), 1, 8);
                ((from, to), speed)
            })
            .collect();
        let world = std::rc::Rc::new(std::cell::RefCell::new(World::new(
            configs, links, max_delay, mix, speeds,
        )));
        let ctx = setup.ctx();
        let w = world.clone();
        let faults = self.faults;
        let quiet = std::rc::Rc::new(std::cell::Cell::new(false));
        let q = quiet.clone();
        setup.sim.spawn("rpc-net", async move {
            for _ in 0..steps {
                w.borrow_mut().step(&ctx, faults);
                w.borrow_mut().tick(1_000);
                ctx.sleep(1_000).await;
            }
            let ok = w.borrow_mut().quiesce(&ctx);
            q.set(ok);
        });
        setup.run();
        let mut v: Vec<Violation> = Vec::new();
        let mut w = world.borrow_mut();
        setup.metric("rpc_messages", w.net.delivered);
        setup.metric("rpc_arrivals", w.arrivals());
        v.extend(w.verdict(quiet.get()));
        v
    }
}
