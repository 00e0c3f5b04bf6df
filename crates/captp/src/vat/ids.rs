//! The identities the vat's parts share: nodes and results records of the capability graph,
//! and the two names of a three-party handoff (our `Provide`, and a provision at the provider).

use super::VatId;
use crate::wire::QuestionId;

pub(crate) type NodeId = u64;
pub(crate) type ResultsId = u64;

/// One `Provide` of ours, exactly: its question ID may be reused once it is retired, its
/// nonce never is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProvideRef {
    pub host: VatId,
    pub question: QuestionId,
    pub nonce: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ProvisionKey {
    pub introducer: VatId,
    pub epoch: u32,
    pub nonce: u64,
}

/// The encoded length of a [`ProvisionKey`].
const PROVISION_LEN: usize = 16;

impl ProvisionKey {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(PROVISION_LEN);
        v.extend_from_slice(&self.introducer.to_le_bytes());
        v.extend_from_slice(&self.epoch.to_le_bytes());
        v.extend_from_slice(&self.nonce.to_le_bytes());
        v
    }

    pub(crate) fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != PROVISION_LEN {
            return None;
        }
        let word = |i: usize| Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?));
        Some(ProvisionKey {
            introducer: word(0)?,
            epoch: word(4)?,
            nonce: u64::from_le_bytes(b.get(8..16)?.try_into().ok()?),
        })
    }
}
