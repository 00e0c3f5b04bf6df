//! Protocol violations: the ways a peer (or, for a few variants, our own engine) can break the
//! ID and reference-count rules of `rpc.capnp`. The connection answers a peer's violation with
//! `Abort` and closes, so each variant says plainly what went wrong and with which ID.

use crate::wire::{Exception, ExceptionType, ExportId, QuestionId};
use core::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    // --- Faults of the peer.
    /// A `Return` names a question we never asked, or one already finished and retired.
    ReturnForUnknownQuestion { id: QuestionId },
    /// A second `Return` for a question that already has one.
    DuplicateReturn { id: QuestionId },
    /// A `Call`/`Bootstrap` reuses a question ID whose answer is still live.
    DuplicateQuestion { id: QuestionId },
    /// A `Finish` names an answer that does not exist (never asked, or already retired).
    FinishForUnknownAnswer { id: QuestionId },
    /// A second `Finish` for an answer that already has one.
    DuplicateFinish { id: QuestionId },
    /// A `Release` names an export that does not exist.
    ReleaseOfUnknownExport { id: ExportId },
    /// A `Release` drops more references than the peer holds.
    OverRelease {
        id: ExportId,
        held: u32,
        released: u32,
    },
    /// The peer sent the same import more than 2^32 - 1 times without releasing it.
    ImportCountOverflow { id: ExportId },
    /// A message target or `receiverHosted` descriptor names an export that does not exist.
    NoSuchExport { id: ExportId, used_in: &'static str },
    /// A `promisedAnswer` target or `receiverAnswer` descriptor names no live answer.
    NoSuchAnswer {
        id: QuestionId,
        used_in: &'static str,
    },
    /// A `Return` of a kind we never asked for (e.g. `resultsSentElsewhere` when our `Call`
    /// said `sendResultsTo.caller`).
    UnexpectedReturn { id: QuestionId, kind: &'static str },
    /// The peer sent a message after the connection was closed by an `Abort` or an error.
    Closed,
    /// The peer broke a rule of the protocol beyond the tables' bookkeeping (embargoes,
    /// promise resolution, third-party handoff).
    PeerViolation { what: String },

    // --- Faults of our own engine (a bug, never caused by peer bytes).
    /// We tried to send `Finish` for a question we do not have.
    FinishForUnknownQuestion { id: QuestionId },
    /// We tried to send a second `Finish` for a question.
    FinishAlreadySent { id: QuestionId },
    /// We tried to send a `Return` for an answer we do not have.
    ReturnForUnknownAnswer { id: QuestionId },
    /// We tried to send a second `Return` for an answer.
    ReturnAlreadySent { id: QuestionId },
    /// We tried to release an import we do not hold.
    DropOfUnknownImport { id: ExportId },
    /// We exported the same object more than 2^32 - 1 times without a release.
    ExportCountOverflow { id: ExportId },
    /// We tried to release more receipts of an import than we hold.
    ImportOverRelease {
        id: ExportId,
        held: u32,
        released: u32,
    },
    /// Every question or export ID is in use.
    IdsExhausted { table: &'static str },
    /// The application used the connection in a way the protocol does not allow.
    Misuse { what: String },
}

impl ProtocolError {
    /// Whether the peer broke the protocol (as opposed to a bug in this engine).
    pub fn is_peer_fault(&self) -> bool {
        matches!(
            self,
            ProtocolError::ReturnForUnknownQuestion { .. }
                | ProtocolError::DuplicateReturn { .. }
                | ProtocolError::DuplicateQuestion { .. }
                | ProtocolError::FinishForUnknownAnswer { .. }
                | ProtocolError::DuplicateFinish { .. }
                | ProtocolError::ReleaseOfUnknownExport { .. }
                | ProtocolError::OverRelease { .. }
                | ProtocolError::ImportCountOverflow { .. }
                | ProtocolError::NoSuchExport { .. }
                | ProtocolError::NoSuchAnswer { .. }
                | ProtocolError::UnexpectedReturn { .. }
                | ProtocolError::Closed
                | ProtocolError::PeerViolation { .. }
        )
    }

    /// The exception to send in the `Abort` that ends the connection.
    pub fn to_exception(&self) -> Exception {
        Exception {
            reason: self.to_string(),
            kind: ExceptionType::Failed,
            trace: String::new(),
        }
    }
}

impl std::error::Error for ProtocolError {}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ProtocolError as E;
        match self {
            E::ReturnForUnknownQuestion { id } => {
                write!(
                    f,
                    "peer sent Return for question {id}, which is not outstanding"
                )
            }
            E::DuplicateReturn { id } => {
                write!(f, "peer sent a second Return for question {id}")
            }
            E::DuplicateQuestion { id } => write!(
                f,
                "peer reused question ID {id} before its previous answer was finished and returned"
            ),
            E::FinishForUnknownAnswer { id } => {
                write!(
                    f,
                    "peer sent Finish for question {id}, which has no live answer"
                )
            }
            E::DuplicateFinish { id } => {
                write!(f, "peer sent a second Finish for question {id}")
            }
            E::ReleaseOfUnknownExport { id } => {
                write!(f, "peer released export {id}, which does not exist")
            }
            E::OverRelease { id, held, released } => write!(
                f,
                "peer released {released} references to export {id} but holds only {held}"
            ),
            E::ImportCountOverflow { id } => write!(
                f,
                "peer sent import {id} more than {} times without a release",
                u32::MAX
            ),
            E::NoSuchExport { id, used_in } => {
                write!(
                    f,
                    "peer's {used_in} names export {id}, which does not exist"
                )
            }
            E::NoSuchAnswer { id, used_in } => {
                write!(
                    f,
                    "peer's {used_in} names question {id}, which has no live answer"
                )
            }
            E::UnexpectedReturn { id, kind } => write!(
                f,
                "peer returned {kind} for question {id}, which our Call did not allow"
            ),
            E::Closed => f.write_str("peer sent a message after the connection was closed"),
            E::PeerViolation { what } => write!(f, "protocol violation: {what}"),
            E::FinishForUnknownQuestion { id } => {
                write!(
                    f,
                    "engine bug: Finish for question {id}, which we did not ask"
                )
            }
            E::FinishAlreadySent { id } => {
                write!(f, "engine bug: second Finish for question {id}")
            }
            E::ReturnForUnknownAnswer { id } => {
                write!(
                    f,
                    "engine bug: Return for question {id}, which has no live answer"
                )
            }
            E::ReturnAlreadySent { id } => {
                write!(f, "engine bug: second Return for question {id}")
            }
            E::DropOfUnknownImport { id } => {
                write!(
                    f,
                    "engine bug: release of import {id}, which we do not hold"
                )
            }
            E::ExportCountOverflow { id } => write!(
                f,
                "engine bug: export {id} sent more than {} times without a release",
                u32::MAX
            ),
            E::ImportOverRelease { id, held, released } => write!(
                f,
                "engine bug: releasing {released} receipts of import {id} but holding {held}"
            ),
            E::IdsExhausted { table } => write!(f, "every {table} ID is in use"),
            E::Misuse { what } => write!(f, "engine misuse: {what}"),
        }
    }
}
