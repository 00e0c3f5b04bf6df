//! The state of one connection: the four tables of `rpc.capnp` and what each entry means to
//! the vat.

use super::graph::{NodeId, ResultsId};
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
    /// Vines exported on this connection: the `Provide` (host, question) each stands for.
    pub vines: BTreeMap<ExportId, (VatId, QuestionId)>,
    /// Promises exported on this connection that we resolved to a third-party capability:
    /// the vine of that handoff. An accept-disembargo naming the promise belongs to that
    /// `Provide`, even when the same capability is being provided to the peer twice.
    pub resolved_to_vine: BTreeMap<ExportId, ExportId>,
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
            resolved_to_vine: BTreeMap::new(),
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
