//! The state of one connection: the four tables of `rpc.capnp` and what each entry means to
//! the vat.

use super::ids::{NodeId, ProvideRef, ResultsId};
use super::{TableSizes, VatId};
use crate::tables::{Answers, Exports, Imports, Questions};
use crate::wire::{AnswerId, EmbargoId, ExportId, ImportId, QuestionId};
use std::collections::BTreeMap;

/// What one of our questions is for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum QuestionKind {
    /// A call or bootstrap; `None` once the application cancelled it (a late `Return`'s caps
    /// are given straight back).
    Call {
        results: Option<ResultsId>,
        /// Sent with `sendResultsTo.yourself` (a tail call): it returns `resultsSentElsewhere`.
        yourself: bool,
    },
    /// A level-3 `Provide` of `node` to `recipient`, who holds the vine `vine`.
    Provide {
        node: NodeId,
        recipient: VatId,
        vine: ExportId,
        nonce: u64,
    },
    /// A level-3 `Accept` for the handoff node `node`.
    Accept { node: NodeId },
}

#[derive(Debug)]
pub(crate) struct QuestionRec {
    pub kind: QuestionKind,
    /// One entry per export reference sent in the params (for `releaseParamCaps`).
    pub param_exports: Vec<ExportId>,
}

/// What one of the peer's questions to us is for.
#[derive(Debug)]
pub(crate) enum AnswerKind {
    /// A call, bootstrap or accept: its results (held).
    Results {
        results: ResultsId,
        /// The call said `sendResultsTo.yourself`.
        yourself: bool,
    },
    /// A level-3 `Provide` from the peer, keyed in the vat's provisions.
    Provide,
}

#[derive(Debug)]
pub(crate) struct AnswerRec {
    pub kind: AnswerKind,
    /// One entry per export reference sent in the results (for `releaseResultCaps`).
    pub result_exports: Vec<ExportId>,
    /// The node each promised-answer path into this answer names, held until the answer is
    /// retired: the peer's later calls on that path must follow its earlier ones through
    /// whatever embargo they raised, so one path names one node for the answer's whole life.
    pub pipelines: BTreeMap<Vec<u16>, NodeId>,
    /// The `Provide` behind each `thirdPartyHosted` capability in the results we returned, by
    /// cap-table index: an accept-disembargo naming a path into this answer belongs to it (as
    /// `Conn::resolved_to_provide` for promises we resolved).
    pub result_provides: BTreeMap<u32, ProvideRef>,
    /// Capabilities in the results we returned that were the peer's own unresolved promises,
    /// by cap-table index, each pinned (`NodeKind::Pinned`, held): the peer's later messages
    /// to those paths go to exactly those promises.
    pub result_pins: BTreeMap<u32, NodeId>,
}

#[derive(Debug)]
pub(crate) struct Conn {
    pub epoch: u32,
    pub third_party: bool,
    pub questions: Questions,
    pub question_recs: BTreeMap<QuestionId, QuestionRec>,
    pub answers: Answers,
    pub answer_recs: BTreeMap<AnswerId, AnswerRec>,
    /// Keyed by node; an entry holds one reference to its node.
    pub exports: Exports<NodeId>,
    pub imports: Imports,
    pub import_nodes: BTreeMap<ImportId, NodeId>,
    /// Our embargoes waiting for a `receiverLoopback`, with the node they hold.
    pub embargoes: BTreeMap<EmbargoId, NodeId>,
    /// Vines exported on this connection: the `Provide` each stands for.
    pub vines: BTreeMap<ExportId, ProvideRef>,
    /// Promises exported on this connection that we resolved to a third-party capability:
    /// the `Provide` of that handoff. An accept-disembargo naming the promise belongs to it,
    /// even when the same capability is being provided to the peer twice.
    pub resolved_to_provide: BTreeMap<ExportId, ProvideRef>,
    next_embargo: EmbargoId,
}

impl Conn {
    pub fn new(epoch: u32, third_party: bool) -> Self {
        Conn {
            epoch,
            third_party,
            questions: Questions::new(),
            question_recs: BTreeMap::new(),
            answers: Answers::new(),
            answer_recs: BTreeMap::new(),
            exports: Exports::new(),
            imports: Imports::new(),
            import_nodes: BTreeMap::new(),
            embargoes: BTreeMap::new(),
            vines: BTreeMap::new(),
            resolved_to_provide: BTreeMap::new(),
            next_embargo: 0,
        }
    }

    pub fn new_embargo(&mut self, node: NodeId) -> EmbargoId {
        let id = self.next_embargo;
        self.next_embargo = self.next_embargo.wrapping_add(1);
        self.embargoes.insert(id, node);
        id
    }

    pub fn sizes(&self) -> TableSizes {
        TableSizes {
            questions: self.questions.len(),
            answers: self.answers.len(),
            exports: self.exports.len(),
            imports: self.imports.len(),
            embargoes: self.embargoes.len(),
        }
    }
}
