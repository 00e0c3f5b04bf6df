//! The answer table: the peer's questions to us, keyed by the ID the peer chose.
//!
//! An answer is live from the `Call`/`Bootstrap` until both our `Return` has been sent and the
//! peer's `Finish` has arrived; only then may the peer reuse its ID. A question ID that arrives
//! while its answer is still live is a protocol error.
//!
//! When we return with `noFinishNeeded`, the answer retires at once; the peer may still send a
//! `Finish` for it, which the protocol says to ignore. We remember such IDs until that `Finish`
//! or the ID's reuse, so that only those stray `Finish`es are excused.

use crate::error::ProtocolError;
use crate::wire::AnswerId;
use std::collections::{BTreeMap, BTreeSet};

/// What has happened to a live answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Answer {
    /// We sent the `Return`.
    pub returned: bool,
    /// The peer's `Finish` arrived (possibly before our `Return`: a cancellation).
    pub finish_received: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Answers {
    live: BTreeMap<AnswerId, Answer>,
    /// Retired by a `noFinishNeeded` return; a later `Finish` for these is ignored.
    finish_optional: BTreeSet<AnswerId>,
}

impl Answers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a `Call` or `Bootstrap` from the peer.
    pub fn on_question(&mut self, id: AnswerId) -> Result<(), ProtocolError> {
        if self.live.contains_key(&id) {
            return Err(ProtocolError::DuplicateQuestion { id });
        }
        // The peer reused the ID, so it will send no stray Finish for the old answer.
        self.finish_optional.remove(&id);
        self.live.insert(id, Answer::default());
        Ok(())
    }

    /// Records the peer's `Finish` for `id`. Returns whether the answer is now retired
    /// (`false` means the call is still running and may be cancelled).
    pub fn on_finish(&mut self, id: AnswerId) -> Result<bool, ProtocolError> {
        let Some(a) = self.live.get_mut(&id) else {
            if self.finish_optional.remove(&id) {
                return Ok(true); // the optional Finish after a noFinishNeeded return
            }
            return Err(ProtocolError::FinishForUnknownAnswer { id });
        };
        if a.finish_received {
            return Err(ProtocolError::DuplicateFinish { id });
        }
        a.finish_received = true;
        let retire = a.returned;
        if retire {
            self.live.remove(&id);
        }
        Ok(retire)
    }

    /// Records that we are sending the `Return` for `id`. Returns whether the answer is now
    /// retired.
    pub fn send_return(
        &mut self,
        id: AnswerId,
        no_finish_needed: bool,
    ) -> Result<bool, ProtocolError> {
        let a = self
            .live
            .get_mut(&id)
            .ok_or(ProtocolError::ReturnForUnknownAnswer { id })?;
        if a.returned {
            return Err(ProtocolError::ReturnAlreadySent { id });
        }
        a.returned = true;
        let finish_received = a.finish_received;
        if finish_received || no_finish_needed {
            self.live.remove(&id);
            if !finish_received {
                self.finish_optional.insert(id);
            }
            return Ok(true);
        }
        Ok(false)
    }

    pub fn get(&self, id: AnswerId) -> Option<&Answer> {
        self.live.get(&id)
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Live answers in ID order.
    pub fn iter(&self) -> impl Iterator<Item = (AnswerId, &Answer)> {
        self.live.iter().map(|(id, a)| (*id, a))
    }

    /// Disconnect: forgets every answer and returns their IDs in order (to cancel them).
    pub fn clear(&mut self) -> Vec<AnswerId> {
        let ids = self.live.keys().copied().collect();
        *self = Answers::new();
        ids
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn answer_lives_until_return_and_finish() {
        let mut t = Answers::new();
        t.on_question(4).unwrap();
        assert_eq!(t.send_return(4, false), Ok(false));
        assert_eq!(
            t.on_question(4),
            Err(ProtocolError::DuplicateQuestion { id: 4 })
        );
        assert_eq!(t.on_finish(4), Ok(true));
        t.on_question(4).unwrap();
    }

    #[test]
    fn early_finish_is_a_cancellation() {
        let mut t = Answers::new();
        t.on_question(0).unwrap();
        assert_eq!(t.on_finish(0), Ok(false));
        assert_eq!(
            t.on_finish(0),
            Err(ProtocolError::DuplicateFinish { id: 0 })
        );
        assert_eq!(t.send_return(0, false), Ok(true));
        assert!(t.is_empty());
    }

    #[test]
    fn finish_after_no_finish_needed_is_ignored_once() {
        let mut t = Answers::new();
        t.on_question(1).unwrap();
        assert_eq!(t.send_return(1, true), Ok(true));
        assert_eq!(t.on_finish(1), Ok(true));
        assert_eq!(
            t.on_finish(1),
            Err(ProtocolError::FinishForUnknownAnswer { id: 1 })
        );
    }

    #[test]
    fn unknown_finish_is_a_peer_fault() {
        let mut t = Answers::new();
        let err = t.on_finish(9).unwrap_err();
        assert!(err.is_peer_fault());
        assert!(err.to_string().contains("question 9"), "{err}");
    }
}
