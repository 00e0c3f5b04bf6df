//! A vat: the sans-IO Cap'n Proto RPC engine of one vat, over any number of connections.
//!
//! Messages from peers go in through [`Vat::handle`]; the messages to send come out of
//! [`Vat::take_outgoing`]; what the application must act on (a call to one of its objects, a
//! lost connection) comes out of [`Vat::take_events`]. Nothing here does I/O, reads a clock or
//! draws randomness, and every container is ordered, so a run is a pure function of its inputs.
//!
//! # Model
//!
//! Every capability the vat can name is a *node* in a graph (`graph.rs`): a local object, an
//! import, a promise (remote: an imported `senderPromise` or a call pipelined on one of our
//! questions; local: a call pipelined on an answer that is still being computed), a broken or
//! null capability, or a resolved promise that *forwards* to the node it resolved to. Calls
//! travel the graph hop by hop and never skip a hop, so a call always follows the destination
//! that was *named* by the `Return` or `Resolve` that resolved a promise, even if that
//! destination has since resolved further (the "Tribble 4-way race" rule, which fixed
//! mirage/capnp-rpc#59). A forwarding node may hold an *embargo*: a queue of calls (and of
//! reflected disembargoes) that waits until the calls already sent down the old path have
//! drained.
//!
//! Embargoes:
//! - A remote promise through which calls were sent, and which resolves to a capability that
//!   lives in this vat (`receiverHosted`, `receiverAnswer`, or an answer taken from one of our
//!   own questions), is embargoed: a `Disembargo.senderLoopback` goes down the old path, and
//!   new calls queue until the peer reflects it as `receiverLoopback`.
//! - A promise that resolves to another promise on the same connection passes on the fact that
//!   calls went through it, so that when that one resolves back into this vat it is embargoed
//!   too (mirage/capnp-rpc#78).
//! - A `senderLoopback` that arrives here follows the same route as calls on its target,
//!   waiting behind any embargo on the way, and is reflected only if the route ends at the
//!   connection it came from; otherwise the sender broke the protocol and the connection is
//!   aborted.
//!
//! Three-party handoff (level 3, `handoff.rs`): a vat that sends a capability hosted by a third
//! vat to a peer that can reach that vat sends the third vat a `Provide` and the peer a
//! `thirdPartyHosted` descriptor with a vine; the peer `Accept`s from the third vat directly.
//!
//! # Conventions
//!
//! - Our `Return`s set `releaseParamCaps = false` and our `Finish`es `releaseResultCaps =
//!   false`: the application owns every capability it receives and releases it explicitly. A
//!   peer that sets them is honoured.
//! - A promised-answer path is a list of pointer-field indices into the results content; the
//!   content names capabilities by index into the cap table (`AnyValue::cap_index_at`).

mod cancel;
mod conn;
mod descriptors;
mod graph;
mod handoff;
#[cfg(test)]
mod hostile_tests;
mod ids;
mod inbound;
mod invariants;
mod refs;
mod resolve;
mod route;

use crate::error::ProtocolError;
use crate::wire::{AnyValue, Exception, ExceptionType, Message};
use conn::Conn;
use graph::{Graph, NodeId, ResultsId};
use handoff::Handoff;
use std::collections::BTreeMap;

/// A vat's identity in the vat network.
pub type VatId = u32;
/// The application's identity for one of its local objects.
pub type ObjectId = u64;
/// Identifies a call to one of the application's objects, until it is answered.
pub type CallId = u64;

/// A bug planted in the engine for one run, to calibrate the oracles. Each mirrors a real bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RpcBug {
    /// Calls and disembargoes follow a resolved promise to its latest resolution instead of
    /// the destination that was named (mirage/capnp-rpc#59, the Tribble race).
    ForwardToLatest,
    /// A promise that resolves back into this vat is not embargoed.
    SkipLoopbackEmbargo,
    /// A promise resolving to another promise on the same connection does not pass on that
    /// calls went through it (mirage/capnp-rpc#78).
    NoRecursiveEmbargo,
    /// A disembargo is sent even when the resolution does not loop back (an error, null or a
    /// capability hosted by the peer; go-capnp#128 / capnproto-rust#117).
    DisembargoNonLoopback,
    /// `Accept` is sent without an embargo even when calls went through the introducer (C++
    /// PR #2121).
    AcceptWithoutEmbargo,
    /// A question ID is reused as soon as its `Return` arrives, before our `Finish`.
    QuestionReuseBeforeFinish,
    /// `Release` gives back one reference fewer than was received.
    ReleaseOffByOne,
}

impl RpcBug {
    pub const ALL: [RpcBug; 7] = [
        RpcBug::ForwardToLatest,
        RpcBug::SkipLoopbackEmbargo,
        RpcBug::NoRecursiveEmbargo,
        RpcBug::DisembargoNonLoopback,
        RpcBug::AcceptWithoutEmbargo,
        RpcBug::QuestionReuseBeforeFinish,
        RpcBug::ReleaseOffByOne,
    ];
}

/// How a vat behaves.
#[derive(Clone, Debug, Default)]
pub struct VatConfig {
    /// Hand capabilities hosted by a third vat over directly (level 3) to peers that support
    /// it, instead of proxying them.
    pub third_party_handoff: bool,
    /// A planted bug (only for oracle calibration).
    pub bug: Option<RpcBug>,
}

/// A capability the application holds. Each one is a counted reference: give it back with
/// [`Vat::release`].
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CapRef(NodeId);

/// The (future) results of a call the application made. Give it back with [`Vat::finish`].
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct AnswerRef(ResultsId);

/// What a call returned.
#[derive(Debug)]
pub enum Outcome {
    Results {
        content: AnyValue,
        caps: Vec<CapRef>,
    },
    Exception(Exception),
}

/// Something the application must act on.
#[derive(Debug)]
pub enum VatEvent {
    /// A call reached one of our objects. Answer it with [`Vat::return_results`],
    /// [`Vat::return_exception`], [`Vat::return_answer`] or [`Vat::tail_call`]. `caps` belong
    /// to the application.
    Call {
        call: CallId,
        object: ObjectId,
        interface_id: u64,
        method_id: u16,
        content: AnyValue,
        caps: Vec<CapRef>,
    },
    /// The caller no longer wants the results of `call` (its answer will be discarded).
    Cancelled { call: CallId },
    /// A connection closed. Every question on it failed and every import from it broke.
    Disconnected {
        peer: VatId,
        reason: Exception,
        /// Whether the peer closed it (`Abort`) rather than us (a protocol error, or
        /// [`Vat::disconnect`]).
        by_peer: bool,
    },
}

/// The sizes of one connection's four tables, and its pending embargoes (for quiescence).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableSizes {
    pub questions: usize,
    pub answers: usize,
    pub exports: usize,
    pub imports: usize,
    pub embargoes: usize,
}

impl TableSizes {
    pub fn is_empty(&self) -> bool {
        *self == TableSizes::default()
    }
}

/// One vat.
#[derive(Debug)]
pub struct Vat {
    id: VatId,
    config: VatConfig,
    bootstrap: Option<ObjectId>,
    graph: Graph,
    conns: BTreeMap<VatId, Conn>,
    /// Calls delivered to the application and not yet answered, with their results.
    calls: BTreeMap<CallId, ResultsId>,
    next_call: CallId,
    handoff: Handoff,
    outbox: Vec<(VatId, Message)>,
    /// Messages that must follow the one being built (a `Resolve` for a broken export).
    later: Vec<(VatId, Message)>,
    events: Vec<VatEvent>,
    /// Protocol errors found while routing (a reflected disembargo that leads nowhere) during
    /// the current `handle`, with the peer each aborted.
    routing_errors: Vec<(VatId, ProtocolError)>,
}

impl Vat {
    pub fn new(id: VatId, config: VatConfig) -> Self {
        Vat {
            id,
            config,
            bootstrap: None,
            graph: Graph::default(),
            conns: BTreeMap::new(),
            calls: BTreeMap::new(),
            next_call: 0,
            handoff: Handoff::default(),
            outbox: Vec::new(),
            later: Vec::new(),
            events: Vec::new(),
            routing_errors: Vec::new(),
        }
    }

    pub fn id(&self) -> VatId {
        self.id
    }

    pub fn config(&self) -> &VatConfig {
        &self.config
    }

    /// Whether a planted bug is on (never, in a build without the `planted-bugs` feature).
    fn bug(&self, bug: RpcBug) -> bool {
        cfg!(feature = "planted-bugs") && self.config.bug == Some(bug)
    }

    /// The object a peer's `Bootstrap` gets.
    pub fn set_bootstrap(&mut self, object: ObjectId) {
        self.bootstrap = Some(object);
    }

    /// Opens the connection to `peer`. `epoch` distinguishes successive connections between
    /// the same two vats (both ends must be given the same one); `third_party` says whether
    /// the peer takes part in three-party handoff.
    pub fn connect(&mut self, peer: VatId, epoch: u32, third_party: bool) {
        self.conns.insert(peer, Conn::new(epoch, third_party));
    }

    pub fn is_connected(&self, peer: VatId) -> bool {
        self.conns.contains_key(&peer)
    }

    /// The peers we have a connection to, in order.
    pub fn peers(&self) -> Vec<VatId> {
        self.conns.keys().copied().collect()
    }

    /// Drains the messages to send, in order, each with its destination.
    pub fn take_outgoing(&mut self) -> Vec<(VatId, Message)> {
        std::mem::take(&mut self.outbox)
    }

    /// Drains the events for the application, in order.
    pub fn take_events(&mut self) -> Vec<VatEvent> {
        std::mem::take(&mut self.events)
    }

    /// The table sizes of the connection to `peer` (`None` if not connected).
    pub fn table_sizes(&self, peer: VatId) -> Option<TableSizes> {
        self.conns.get(&peer).map(Conn::sizes)
    }

    /// How many capabilities, answers and unanswered local calls the vat still tracks; all
    /// zero once the application has given everything back and the network is quiet.
    pub fn live_counts(&self) -> (usize, usize, usize) {
        (
            self.graph.node_count(),
            self.graph.results_count(),
            self.calls.len(),
        )
    }

    // -----------------------------------------------------------------------------------------
    // The application's side.

    /// A capability to one of our own objects.
    pub fn local_cap(&mut self, object: ObjectId) -> CapRef {
        CapRef(self.graph.new_local(object))
    }

    /// Another reference to the same capability.
    pub fn clone_cap(&mut self, cap: &CapRef) -> CapRef {
        self.graph.add_ref(cap.0);
        CapRef(cap.0)
    }

    /// Gives back a capability.
    pub fn release(&mut self, cap: CapRef) {
        self.drop_node(cap.0);
        self.check();
    }

    /// Asks `peer` for its bootstrap capability; the results hold it as their only capability
    /// (content: a capability pointer, path `[]`).
    pub fn bootstrap(&mut self, peer: VatId) -> AnswerRef {
        AnswerRef(self.send_bootstrap(peer))
    }

    /// Calls `target`. `caps` are the capabilities `content` refers to by index; the call
    /// takes its own references, so the caller keeps its own.
    pub fn call(
        &mut self,
        target: &CapRef,
        interface_id: u64,
        method_id: u16,
        content: AnyValue,
        caps: &[&CapRef],
    ) -> AnswerRef {
        let results = self.graph.new_results();
        let call = self.new_call_msg(interface_id, method_id, content, caps, results);
        self.deliver(target.0, graph::Delivery::Call(call), false);
        self.flush_resolutions();
        self.check();
        AnswerRef(results)
    }

    /// A capability within the results of `answer`, usable before they arrive (promise
    /// pipelining). `path` selects pointer fields from the results content.
    pub fn pipeline(&mut self, answer: &AnswerRef, path: &[u16]) -> CapRef {
        let node = self.pipeline_node(answer.0, path);
        CapRef(node)
    }

    /// The outcome of `answer`, once it is known. Each call returns fresh references.
    pub fn outcome(&mut self, answer: &AnswerRef) -> Option<Outcome> {
        match self.graph.settled(answer.0)? {
            Ok((content, caps)) => {
                for &c in &caps {
                    self.graph.add_ref(c);
                }
                Some(Outcome::Results {
                    content,
                    caps: caps.into_iter().map(CapRef).collect(),
                })
            }
            Err(e) => Some(Outcome::Exception(e)),
        }
    }

    /// Gives back an answer: sends `Finish` once nothing else needs it (cancelling the call if
    /// it has not returned).
    pub fn finish(&mut self, answer: AnswerRef) {
        self.drop_results(answer.0);
        self.check();
    }

    /// Answers a call to one of our objects.
    pub fn return_results(
        &mut self,
        call: CallId,
        content: AnyValue,
        caps: &[&CapRef],
    ) -> Result<(), ProtocolError> {
        let results = self.take_call(call)?;
        let caps: Vec<NodeId> = caps
            .iter()
            .map(|c| {
                self.graph.add_ref(c.0);
                c.0
            })
            .collect();
        self.settle(results, Ok((content, caps)));
        self.drop_results(results);
        self.flush_resolutions();
        self.check();
        Ok(())
    }

    /// Answers a call to one of our objects with an exception.
    pub fn return_exception(&mut self, call: CallId, reason: &str) -> Result<(), ProtocolError> {
        let results = self.take_call(call)?;
        self.settle(results, Err(failed(reason)));
        self.drop_results(results);
        self.flush_resolutions();
        self.check();
        Ok(())
    }

    /// Answers a call with the results of another answer (returning a promise).
    pub fn return_answer(&mut self, call: CallId, answer: &AnswerRef) -> Result<(), ProtocolError> {
        let results = self.take_call(call)?;
        self.redirect(results, answer.0);
        self.drop_results(results);
        self.flush_resolutions();
        self.check();
        Ok(())
    }

    /// Answers a call by making another call whose results become this call's results (a
    /// tail call). When the new call goes to the connection the original call came from, it
    /// is sent with `sendResultsTo.yourself` and answered with `takeFromOtherQuestion`.
    pub fn tail_call(
        &mut self,
        call: CallId,
        target: &CapRef,
        interface_id: u64,
        method_id: u16,
        content: AnyValue,
        caps: &[&CapRef],
    ) -> Result<(), ProtocolError> {
        let results = self.take_call(call)?;
        let inner = self.graph.new_results();
        let msg = self.new_call_msg(interface_id, method_id, content, caps, inner);
        self.graph.results_mut(inner).tail_of = Some(results);
        self.deliver(target.0, graph::Delivery::Call(msg), false);
        self.redirect(results, inner);
        self.drop_results(inner);
        self.drop_results(results);
        self.flush_resolutions();
        self.check();
        Ok(())
    }

    /// Closes the connection to `peer` as a lost connection would (no `Abort` is sent).
    pub fn disconnect(&mut self, peer: VatId, reason: &str) {
        let reason = Exception {
            reason: reason.into(),
            kind: ExceptionType::Disconnected,
            trace: String::new(),
        };
        self.close(peer, reason, false);
        self.flush_resolutions();
        self.check();
    }

    /// The engine's invariants, after every step in debug builds (`invariants.rs`).
    pub(crate) fn check(&self) {
        if cfg!(debug_assertions) {
            self.assert_invariants();
        }
    }

    fn take_call(&mut self, call: CallId) -> Result<ResultsId, ProtocolError> {
        self.calls.remove(&call).ok_or(ProtocolError::Misuse {
            what: format!("answering call {call}, which is not pending"),
        })
    }

    fn send(&mut self, peer: VatId, msg: Message) {
        self.outbox.push((peer, msg));
        self.outbox.append(&mut self.later);
    }
}

pub(crate) fn failed(reason: &str) -> Exception {
    Exception {
        reason: reason.into(),
        kind: ExceptionType::Failed,
        trace: String::new(),
    }
}

pub(crate) fn disconnected(reason: &str) -> Exception {
    Exception {
        reason: reason.into(),
        kind: ExceptionType::Disconnected,
        trace: String::new(),
    }
}
