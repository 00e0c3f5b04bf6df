//! `rpc-vs-capnp-rpc`: our engine against a second, independent implementation. Vat 0 is our
//! `captp::Vat`; vat 1 is the reference Rust crate capnp-rpc 0.27.3 (`capnp_peer::CapnpRpcVat`),
//! run as a message-level peer inside the simulation.
//!
//! Model: one connection, a per-direction FIFO of real encoded `rpc.capnp` messages (the
//! link of every RPC scenario, `rpc/link.rs`). Our messages are encoded with
//! `captp::wire::encode`; capnp-rpc's are the bytes it framed itself. Every message is
//! decoded with our decoder as it is queued (as hostile input) for the oracles, and handed to
//! the receiver as it travelled (bytes to capnp-rpc, the decoded message to our vat). Each
//! step one action, drawn from the decision source, by one side: deliver one deliverable
//! queue head; call a held capability (`Probe.call(ref, seq, arg)`, sometimes passing a
//! capability, sometimes a fresh local probe); pipeline on an answer; take the capability out
//! of a returned answer; answer a call (our side: results with the argument, a fresh probe or
//! a held capability, a promise for another answer, a tail call or an exception; capnp-rpc's
//! probe objects answer every call at once, with the argument or a fresh probe); release;
//! finish or drop an answer; bootstrap. At the end the network is drained, every call
//! answered, everything given back on both sides and the network drained again.
//!
//! Faults: seeded delivery delays and interleaving of the two directions, and connection
//! loss. A connection ends when the fault cuts it, when our vat aborts it (a protocol error)
//! or when capnp-rpc shuts it down (its `Abort`): both sides then see a closed connection
//! (everything in flight is lost; capnp-rpc's side is cut and run until it has torn
//! everything down), and a new connection is made at a new epoch with a fresh capnp-rpc vat
//! (an `RpcSystem` serves one connection, so reconnecting means a new incarnation of vat 1
//! with new probe objects; our vat keeps its state, its capabilities from the old connection
//! are broken).
//!
//! Oracles: the wire checker over every delivered message in both directions; E-order with
//! the shadow reference graph over arrivals at both sides' objects (ours from our vat's
//! events, capnp-rpc's from its probe objects' arrival log), plus a mirror that also flags a
//! call arriving after *any* later call on its reference; "a correct peer never aborts" and
//! never panics; quiescence (wire checker, then our vat must track nothing once the
//! connection is closed).
//!
//! Classification: a violation is reported only when our engine is at fault; what capnp-rpc
//! does wrong is a *finding* about that crate (a trace line `capnp-finding` and the metrics
//! `capnp_rpc_findings`, and one per kind), never a violation, so it cannot fail our sweeps.
//! The rules, one per oracle, head `blame.rs`.
//!
//! The parts, each its own file: the link (`link.rs`: queues, positions, what crossed), our
//! side (`ours.rs`: our vat and its probe application, `rpc/app.rs`), their side
//! (`theirs.rs`: the capnp-rpc vat and its driver), what each side said and saw (`view.rs`),
//! the blame rules (`blame.rs`), and the duel that joins them (`duel.rs`) with its workload
//! (`workload.rs`).

mod action;
mod blame;
mod duel;
mod link;
mod ours;
mod theirs;
mod view;
mod workload;

use crate::{Scenario, Setup, Violation};
use blame::Kind;
use captp::VatId;
use duel::Duel;
use simkit::KernelOptions;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// Our vat.
const OURS: VatId = 0;
/// The capnp-rpc vat.
const THEIRS: VatId = 1;

/// The other side of the one connection.
fn other(v: VatId) -> VatId {
    1 - v
}

pub struct VsCapnpRpc;

impl Scenario for VsCapnpRpc {
    fn name(&self) -> &'static str {
        "rpc-vs-capnp-rpc"
    }

    fn description(&self) -> &'static str {
        "Cap'n Proto RPC: our engine against the capnp-rpc crate over the simulated link, \
         pipelining, embargoes, faults; capnp-rpc's own faults are findings, not violations"
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

    fn run(&self, setup: &mut Setup) -> Vec<Violation> {
        let steps = setup.derive("rpc_steps", 60, 240);
        let max_delay = setup.derive("rpc_max_delay_us", 0, 3) * 1_000;
        let duel = Rc::new(RefCell::new(Duel::new(max_delay)));
        let ctx = setup.ctx();
        let d = duel.clone();
        let done = Rc::new(Cell::new(false));
        let finished = done.clone();
        setup.sim.spawn("rpc-net", async move {
            for _ in 0..steps {
                d.borrow_mut().step(&ctx);
                ctx.sleep(1_000).await;
            }
            d.borrow_mut().finish(&ctx);
            finished.set(true);
        });
        setup.run();
        let mut v: Vec<Violation> = Vec::new();
        let mut d = duel.borrow_mut();
        if !done.get() {
            v.push(Violation::new("rpc-app", "the workload did not finish"));
        }
        setup.metric("rpc_messages", d.link.delivered);
        setup.metric("rpc_arrivals", d.ledger.eorder.arrivals());
        setup.metric("rpc_connections", u64::from(d.epoch));
        let count = |kind: Kind| d.judge.findings(Some(kind));
        setup.metric("capnp_rpc_findings", d.judge.findings(None));
        setup.metric("capnp_rpc_eorder_findings", count(Kind::EOrder));
        setup.metric("capnp_rpc_wire_findings", count(Kind::Wire));
        setup.metric("capnp_rpc_abort_findings", count(Kind::Abort));
        setup.metric("capnp_rpc_quiescence_findings", count(Kind::Quiescence));
        setup.metric("capnp_rpc_panic_findings", count(Kind::Panic));
        v.append(&mut d.judge.take_violations());
        v
    }
}
