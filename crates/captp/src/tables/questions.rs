//! The question table: calls and bootstraps we asked, keyed by the ID we chose.
//!
//! An ID is retired, and may be reused by the next question, only once the peer's `Return` has
//! been received *and* our `Finish` has been sent: until the `Return`, the peer may still name
//! it; until the `Finish`, we may. (`Return.noFinishNeeded` retires it at the `Return`.)
//! New IDs are the lowest free ones, so retired IDs really are reused.
//!
//! IDs stay below 2^30: the protocol reserves higher ones (`onlyPromisePipeline` questions set
//! the high bit; level-3 `ThirdPartyAnswer` IDs live in [2^30, 2^31)).

use super::IdAllocator;
use crate::error::ProtocolError;
use crate::wire::QuestionId;
use std::collections::BTreeMap;

/// Exclusive upper bound of ordinary question IDs.
pub const QUESTION_ID_LIMIT: u64 = 1 << 30;

/// What has happened to a live question.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Question {
    /// The peer's `Return` arrived.
    pub returned: bool,
    /// We sent `Finish` (possibly before the `Return`, to cancel).
    pub finish_sent: bool,
}

#[derive(Clone, Debug)]
pub struct Questions {
    live: BTreeMap<QuestionId, Question>,
    ids: IdAllocator,
}

impl Default for Questions {
    fn default() -> Self {
        Self::new()
    }
}

impl Questions {
    pub fn new() -> Self {
        Questions {
            live: BTreeMap::new(),
            ids: IdAllocator::with_limit(QUESTION_ID_LIMIT),
        }
    }

    /// Allocates the ID for a new `Call` or `Bootstrap` we are about to send.
    pub fn ask(&mut self) -> Result<QuestionId, ProtocolError> {
        let id = self
            .ids
            .allocate()
            .ok_or(ProtocolError::IdsExhausted { table: "question" })?;
        self.live.insert(id, Question::default());
        Ok(id)
    }

    /// Records the peer's `Return` for `id`. Returns whether the ID is now retired.
    pub fn on_return(
        &mut self,
        id: QuestionId,
        no_finish_needed: bool,
    ) -> Result<bool, ProtocolError> {
        let q = self
            .live
            .get_mut(&id)
            .ok_or(ProtocolError::ReturnForUnknownQuestion { id })?;
        if q.returned {
            return Err(ProtocolError::DuplicateReturn { id });
        }
        q.returned = true;
        let retire = q.finish_sent || no_finish_needed;
        if retire {
            self.retire(id);
        }
        Ok(retire)
    }

    /// Records that we are sending `Finish` for `id`. Returns whether the ID is now retired.
    pub fn finish(&mut self, id: QuestionId) -> Result<bool, ProtocolError> {
        let q = self
            .live
            .get_mut(&id)
            .ok_or(ProtocolError::FinishForUnknownQuestion { id })?;
        if q.finish_sent {
            return Err(ProtocolError::FinishAlreadySent { id });
        }
        q.finish_sent = true;
        let retire = q.returned;
        if retire {
            self.retire(id);
        }
        Ok(retire)
    }

    fn retire(&mut self, id: QuestionId) {
        self.live.remove(&id);
        self.ids.free(id);
    }

    pub fn get(&self, id: QuestionId) -> Option<&Question> {
        self.live.get(&id)
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Live questions in ID order.
    pub fn iter(&self) -> impl Iterator<Item = (QuestionId, &Question)> {
        self.live.iter().map(|(id, q)| (*id, q))
    }

    /// Disconnect: forgets every question and returns their IDs in order (to fail them).
    pub fn clear(&mut self) -> Vec<QuestionId> {
        let ids = self.live.keys().copied().collect();
        *self = Questions::new();
        ids
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn id_is_reused_only_after_return_and_finish() {
        let mut t = Questions::new();
        let a = t.ask().unwrap();
        assert_eq!(t.on_return(a, false), Ok(false));
        assert_ne!(t.ask().unwrap(), a, "returned but not finished");
        assert_eq!(t.finish(a), Ok(true));
        assert_eq!(t.ask().unwrap(), a, "lowest free ID comes back");
    }

    #[test]
    fn cancel_then_return_retires() {
        let mut t = Questions::new();
        let a = t.ask().unwrap();
        assert_eq!(t.finish(a), Ok(false));
        assert_eq!(t.on_return(a, false), Ok(true));
        assert!(t.is_empty());
    }

    #[test]
    fn no_finish_needed_retires_at_return() {
        let mut t = Questions::new();
        let a = t.ask().unwrap();
        assert_eq!(t.on_return(a, true), Ok(true));
        assert_eq!(
            t.finish(a),
            Err(ProtocolError::FinishForUnknownQuestion { id: a })
        );
    }

    #[test]
    fn peer_faults_are_typed() {
        let mut t = Questions::new();
        assert_eq!(
            t.on_return(3, false),
            Err(ProtocolError::ReturnForUnknownQuestion { id: 3 })
        );
        let a = t.ask().unwrap();
        t.on_return(a, false).unwrap();
        let err = t.on_return(a, false).unwrap_err();
        assert_eq!(err, ProtocolError::DuplicateReturn { id: a });
        assert!(err.is_peer_fault());
        assert!(err.to_string().contains("second Return"), "{err}");
    }
}
