//! The capability graph: nodes (what a reference designates), results (what a question or a
//! local call will produce), reference counting, and the routing of calls along the graph.
//!
//! Every node and results record is counted: application handles, cap tables of results,
//! export-table entries, queued calls, forwarding links and embargoes each hold one reference.
//! When a count reaches zero the record goes, and with it what it holds (an import's
//! `Release`, a question's `Finish`).

use super::{CallId, ObjectId, VatId};
use crate::wire::{
    AnswerId, AnyValue, EmbargoId, Exception, ExportId, ImportId, MessageTarget, PromisedAnswer,
    QuestionId,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

pub(crate) use super::ids::{NodeId, ResultsId};

/// Where a promise's resolution lives, as the message that resolved it says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Via {
    /// In this vat (`receiverHosted`, `receiverAnswer`, or results taken from one of our own
    /// answers): calls already sent down the old path will come back, so new ones must wait.
    Loopback,
    /// At the peer that resolved it (`senderHosted`, `senderPromise`).
    Peer,
    /// At a third vat (`thirdPartyHosted`).
    ThirdParty,
    /// Nowhere: an exception or a null capability.
    Nothing,
}

#[derive(Debug)]
pub(crate) struct CallMsg {
    pub interface_id: u64,
    pub method_id: u16,
    pub content: AnyValue,
    /// Owned references.
    pub caps: Vec<NodeId>,
    /// Owned reference to where the results go.
    pub results: ResultsId,
    /// Where the call leaves for the wire, if it entered through a [`NodeKind::Pinned`].
    pub pin: Option<Pin>,
}

/// The promise a delivery must leave by (see [`NodeKind::Pinned`]): when its route reaches
/// `stop`, it goes to `target` on the connection to `peer` of that `epoch`, whatever `stop`
/// has resolved to since. Carried with the delivery, so that it holds through any queue or
/// embargo on the way.
#[derive(Clone, Debug)]
pub(crate) struct Pin {
    pub stop: NodeId,
    pub peer: VatId,
    pub epoch: u32,
    pub target: MessageTarget,
}

/// A message travelling the graph: a call, or a disembargo being reflected.
#[derive(Debug)]
pub(crate) enum Delivery {
    Call(CallMsg),
    /// A `Disembargo` from `from` (on the connection of that `epoch`) on its way to the end
    /// of its target's route.
    Reflect {
        from: VatId,
        epoch: u32,
        kind: ReflectKind,
        pin: Option<Pin>,
    },
}

impl Delivery {
    pub(crate) fn pin(&self) -> Option<&Pin> {
        match self {
            Delivery::Call(c) => c.pin.as_ref(),
            Delivery::Reflect { pin, .. } => pin.as_ref(),
        }
    }

    /// A disembargo whose sender's connection has closed since it arrived: the embargo it
    /// would lift, or the handoff it would release, went with that connection, and a
    /// reflection would reach a newer connection that never asked for it.
    pub(crate) fn stale(&self, epoch_of: impl Fn(VatId) -> Option<u32>) -> bool {
        match self {
            Delivery::Call(_) => false,
            Delivery::Reflect { from, epoch, .. } => epoch_of(*from) != Some(*epoch),
        }
    }

    pub(crate) fn set_pin(&mut self, to: Option<Pin>) {
        match self {
            Delivery::Call(c) => c.pin = to,
            Delivery::Reflect { pin, .. } => *pin = to,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) enum ReflectKind {
    /// `senderLoopback(id)` on `target` (as the sender named it): reflect as
    /// `receiverLoopback(id)`.
    Loopback(EmbargoId, MessageTarget),
    /// `accept`: pass on to the provider as `provide`; with the `Provide` (host, question)
    /// that the named promise's resolution stood for, where we know it.
    Accept(Option<super::ids::ProvideRef>),
}

#[derive(Debug, Default)]
pub(crate) struct Embargo {
    pub queue: VecDeque<Delivery>,
    /// The question the disembargo targets, kept alive until the embargo lifts.
    pub hold: Option<ResultsId>,
}

/// A capability Bob is accepting from Carol.
#[derive(Debug)]
pub(crate) struct Accepting {
    /// The vine (held until the handoff completes).
    pub vine: NodeId,
    pub provider: VatId,
    pub provision: super::ids::ProvisionKey,
    /// Calls waiting for the handoff.
    pub queue: VecDeque<Delivery>,
    /// Calls went towards it through the introducer: the `Accept` must be embargoed.
    pub embargo: bool,
    /// The `Accept` has been sent.
    pub sent: bool,
}

#[derive(Debug)]
pub(crate) enum NodeKind {
    Null,
    Broken(Exception),
    Local(ObjectId),
    /// A settled capability the peer exported to us.
    Import {
        peer: VatId,
        id: ImportId,
    },
    /// An unresolved remote promise: an imported `senderPromise` (`import` is set), or a
    /// capability in the results of one of our questions (`results` is held).
    RemotePromise {
        peer: VatId,
        target: MessageTarget,
        import: Option<ImportId>,
        results: Option<ResultsId>,
        /// Calls were sent through it.
        used: bool,
    },
    /// A capability in results being computed in this vat: calls wait here.
    LocalPromise {
        results: ResultsId,
        queue: VecDeque<Delivery>,
    },
    /// A capability being accepted from a third vat: calls wait here until the `Accept`
    /// returns.
    ThirdParty(Accepting),
    /// What we told `peer` a promise resolved to, when that was one of `peer`'s own promises
    /// (`target` on that connection): the peer's messages to the old promise go to exactly
    /// that promise, over the wire, even after it resolves further (the Tribble 4-way race
    /// rule of `rpc.capnp`; the C++ implementation pins export entries and post-return
    /// pipelines the same way). Deliveries go on from `to` (the capability as it was named,
    /// held) carrying the pin; `results` holds the promise's question, when its target is a
    /// promised answer, so that the target stays valid.
    Pinned {
        to: NodeId,
        pin: Pin,
        results: Option<ResultsId>,
    },
    /// A resolved promise: calls go on to `to`, after whatever waits in the embargo.
    Forward {
        to: NodeId,
        embargo: Option<Embargo>,
        /// The import this was (released when this node goes).
        import: Option<(VatId, ImportId)>,
        /// The peer whose promise this was (it resolved it, by `Resolve` or `Return`).
        resolved_by: Option<VatId>,
    },
}

#[derive(Debug)]
pub(crate) struct Node {
    pub kind: NodeKind,
    pub(crate) refs: u32,
    /// Where this node is exported as a `senderPromise`: each gets a `Resolve`.
    pub promised_to: BTreeSet<(VatId, ExportId)>,
}

#[derive(Debug)]
pub(crate) enum ResultsState {
    Pending,
    /// Will be the results of another record (a returned promise or a tail call).
    Following(ResultsId),
    Done {
        content: AnyValue,
        caps: Vec<NodeId>,
    },
    Failed(Exception),
    /// The callee kept them (`sendResultsTo.yourself`); only pipelining reaches them.
    Elsewhere,
}

#[derive(Debug)]
pub(crate) struct Results {
    pub(crate) refs: u32,
    pub state: ResultsState,
    /// Promise nodes pipelined on these results while pending, by path (weak).
    pub pipelines: BTreeMap<Vec<u16>, NodeId>,
    /// The same, once the results settled and those promises resolved (weak; node IDs are
    /// never reused). A later pipelined call must go through them, not straight to the
    /// capability: earlier calls went that way, and an embargo there may hold them.
    pub resolved_pipelines: BTreeMap<Vec<u16>, NodeId>,
    /// The nodes of `resolved_pipelines` that belong to other results (pipelines taken through
    /// what these results follow), held while these results live: calls the peer pipelined
    /// on them went that way, and without the node, the promise's `used` mark and embargo
    /// would be gone by the time the followed results settle.
    pub held_pipelines: Vec<NodeId>,
    /// The peer's question these results answer.
    pub return_to: Option<(VatId, AnswerId)>,
    /// Our question that produces them.
    pub question: Option<(VatId, QuestionId)>,
    /// Records following these results (they hold a reference to us).
    pub followers: Vec<ResultsId>,
    /// These are the results of a tail call made to answer that record.
    pub tail_of: Option<ResultsId>,
    /// The local call producing them, while the application has not answered.
    pub local_call: Option<CallId>,
    /// Planted bug: the question's ID went back to the table at the `Return`.
    pub early_finish: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Graph {
    pub(crate) nodes: BTreeMap<NodeId, Node>,
    next_node: NodeId,
    pub(crate) results: BTreeMap<ResultsId, Results>,
    next_results: ResultsId,
}

impl Graph {
    /// Every node with its count (for the engine's invariant checks).
    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, &Node)> {
        self.nodes.iter().map(|(id, n)| (*id, n))
    }

    /// Every node, to change (for cancelling queued calls).
    pub fn nodes_mut(&mut self) -> impl Iterator<Item = (NodeId, &mut Node)> {
        self.nodes.iter_mut().map(|(id, n)| (*id, n))
    }

    /// Every results record with its count (for the engine's invariant checks).
    pub fn all_results(&self) -> impl Iterator<Item = (ResultsId, &Results)> {
        self.results.iter().map(|(id, r)| (*id, r))
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn results_count(&self) -> usize {
        self.results.len()
    }

    pub fn new_node(&mut self, kind: NodeKind) -> NodeId {
        let id = self.next_node;
        self.next_node += 1;
        self.nodes.insert(
            id,
            Node {
                kind,
                refs: 1,
                promised_to: BTreeSet::new(),
            },
        );
        id
    }

    pub fn new_local(&mut self, object: ObjectId) -> NodeId {
        self.new_node(NodeKind::Local(object))
    }

    pub fn new_results(&mut self) -> ResultsId {
        let id = self.next_results;
        self.next_results += 1;
        self.results.insert(
            id,
            Results {
                refs: 1,
                state: ResultsState::Pending,
                pipelines: BTreeMap::new(),
                resolved_pipelines: BTreeMap::new(),
                held_pipelines: Vec::new(),
                return_to: None,
                question: None,
                followers: Vec::new(),
                tail_of: None,
                local_call: None,
                early_finish: false,
            },
        );
        id
    }

    pub fn add_ref(&mut self, node: NodeId) {
        if let Some(n) = self.nodes.get_mut(&node) {
            n.refs += 1;
        }
    }

    pub fn add_results_ref(&mut self, results: ResultsId) {
        if let Some(r) = self.results.get_mut(&results) {
            r.refs += 1;
        }
    }

    pub fn node(&self, node: NodeId) -> Option<&Node> {
        self.nodes.get(&node)
    }

    pub fn node_mut(&mut self, node: NodeId) -> Option<&mut Node> {
        self.nodes.get_mut(&node)
    }

    pub fn kind(&self, node: NodeId) -> Option<&NodeKind> {
        self.nodes.get(&node).map(|n| &n.kind)
    }

    pub fn results(&self, results: ResultsId) -> Option<&Results> {
        self.results.get(&results)
    }

    /// The record must exist (the caller holds a reference).
    pub fn results_mut(&mut self, results: ResultsId) -> &mut Results {
        self.results
            .get_mut(&results)
            .expect("a results record is alive while referenced")
    }

    /// Follows resolved promises to the end, ignoring embargoes.
    /// (Resolution never closes a cycle, see [`Vat::resolve_node`]; the bound is a backstop.)
    pub fn latest(&self, mut node: NodeId) -> NodeId {
        for _ in 0..=self.nodes.len() {
            match self.kind(node) {
                Some(NodeKind::Forward { to, .. } | NodeKind::Pinned { to, .. }) => node = *to,
                _ => break,
            }
        }
        node
    }

    /// The end of a record's `Following` chain.
    pub fn followed(&self, mut results: ResultsId) -> ResultsId {
        for _ in 0..=self.results.len() {
            match self.results.get(&results) {
                Some(Results {
                    state: ResultsState::Following(next),
                    ..
                }) => results = *next,
                _ => break,
            }
        }
        results
    }

    /// The outcome of a record, if known (with the caps not yet counted for the caller).
    pub fn settled(
        &self,
        results: ResultsId,
    ) -> Option<Result<(AnyValue, Vec<NodeId>), Exception>> {
        match &self.results.get(&self.followed(results))?.state {
            ResultsState::Done { content, caps } => Some(Ok((content.clone(), caps.clone()))),
            ResultsState::Failed(e) => Some(Err(e.clone())),
            ResultsState::Pending | ResultsState::Following(_) | ResultsState::Elsewhere => None,
        }
    }

    /// Takes one reference away from a node; returns it if that was the last.
    pub(crate) fn unref_node(&mut self, node: NodeId) -> Option<Node> {
        let n = self.nodes.get_mut(&node)?;
        n.refs = n.refs.saturating_sub(1);
        if n.refs > 0 {
            return None;
        }
        self.nodes.remove(&node)
    }

    pub(crate) fn unref_results(&mut self, results: ResultsId) -> Option<Results> {
        let r = self.results.get_mut(&results)?;
        r.refs = r.refs.saturating_sub(1);
        if r.refs > 0 {
            return None;
        }
        self.results.remove(&results)
    }
}

impl Graph {
    pub fn kind_mut(&mut self, node: NodeId) -> Option<&mut NodeKind> {
        self.nodes.get_mut(&node).map(|n| &mut n.kind)
    }
}

/// The path of pointer fields a promised answer names (no-ops skipped).
pub(crate) fn pipeline_path(pa: &PromisedAnswer) -> Vec<u16> {
    pa.transform
        .iter()
        .filter_map(|op| match op {
            crate::wire::PipelineOp::Noop => None,
            crate::wire::PipelineOp::GetPointerField(i) => Some(*i),
        })
        .collect()
}
