//! A tcp plan as boot parameters, and the guest's results as the bytes it reports.
//!
//! Layout, all integers little-endian (counts and lengths u64):
//!
//! ```text
//! plan:    magic "TCPP"  version u32 = 1  clients u64  servers u64  closed_port_connect u8
//!          ring u64  conversation count, per conversation: to_guest, from_guest, chunk, key
//! results: magic "TCPR"  closed u8 (0 none, 1 refused, 2 connected)
//!          read count, per entry: index u64, bytes;  wrote count, likewise
//! ```
//!
//! Both inputs are untrusted (boot parameters; a guest's report): decoding never panics, checks
//! every count against the bytes left before allocating, and rejects trailing bytes.

use super::{Conversation, TcpPlan, TcpResults};
use crate::codec::{Reader, put_bytes, put_len, put_u64};
use crate::echo::PlanError;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

const PLAN_MAGIC: u32 = u32::from_le_bytes(*b"TCPP");
const RESULTS_MAGIC: u32 = u32::from_le_bytes(*b"TCPR");
const VERSION: u32 = 1;
const CONVERSATION: usize = 4 * 8;
/// Smallest entry of a results map: an index and an empty byte string.
const MIN_ENTRY: usize = 8 + 8;

fn magic(r: &mut Reader<'_>, expected: u32) -> Result<(), PlanError> {
    match r.u32()? {
        m if m == expected => Ok(()),
        m => Err(PlanError::BadMagic(m)),
    }
}

impl TcpPlan {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&PLAN_MAGIC.to_le_bytes());
        out.extend_from_slice(&VERSION.to_le_bytes());
        put_len(&mut out, self.clients);
        put_len(&mut out, self.servers);
        out.push(u8::from(self.closed_port_connect));
        put_u64(&mut out, self.ring);
        put_len(&mut out, self.conversations.len());
        for c in &self.conversations {
            for v in [c.to_guest, c.from_guest, c.chunk, c.key] {
                put_u64(&mut out, v);
            }
        }
        out
    }

    /// Reads a plan from untrusted boot parameters. The conversations must be one per peer.
    pub fn decode(bytes: &[u8]) -> Result<TcpPlan, PlanError> {
        let mut r = Reader::new(bytes);
        magic(&mut r, PLAN_MAGIC)?;
        let version = r.u32()?;
        if version != VERSION {
            return Err(PlanError::UnsupportedVersion(version));
        }
        let clients = r.usize("clients")?;
        let servers = r.usize("servers")?;
        let closed_port_connect = r.tag("closed_port_connect")?;
        let ring = r.u64()?;
        let count = r.count("conversation count", CONVERSATION)?;
        if Some(count) != clients.checked_add(servers) {
            return Err(PlanError::LengthTooLarge {
                what: "conversations (one per client and server)",
                len: count as u64,
                remaining: r.remaining(),
            });
        }
        let mut conversations = Vec::with_capacity(count);
        for _ in 0..count {
            conversations.push(Conversation {
                to_guest: r.u64()?,
                from_guest: r.u64()?,
                chunk: r.u64()?,
                key: r.u64()?,
            });
        }
        r.finish()?;
        Ok(TcpPlan {
            clients,
            servers,
            closed_port_connect,
            ring,
            conversations,
        })
    }
}

fn put_map(out: &mut Vec<u8>, map: &BTreeMap<usize, Vec<u8>>) {
    put_len(out, map.len());
    for (index, bytes) in map {
        put_len(out, *index);
        put_bytes(out, bytes);
    }
}

fn map(r: &mut Reader<'_>, what: &'static str) -> Result<BTreeMap<usize, Vec<u8>>, PlanError> {
    let count = r.count(what, MIN_ENTRY)?;
    let mut out = BTreeMap::new();
    for _ in 0..count {
        let index = r.usize("conversation index")?;
        out.insert(index, r.bytes(what)?);
    }
    Ok(out)
}

impl TcpResults {
    /// What the guest reports (errors go separately).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&RESULTS_MAGIC.to_le_bytes());
        out.push(match self.closed_port_connected {
            None => 0,
            Some(false) => 1,
            Some(true) => 2,
        });
        put_map(&mut out, &self.read);
        put_map(&mut out, &self.wrote);
        out
    }

    /// Reads a guest's report (untrusted).
    pub fn decode(bytes: &[u8]) -> Result<TcpResults, PlanError> {
        let mut r = Reader::new(bytes);
        magic(&mut r, RESULTS_MAGIC)?;
        let closed_port_connected = match r.u8()? {
            0 => None,
            1 => Some(false),
            2 => Some(true),
            tag => {
                return Err(PlanError::BadTag {
                    what: "closed-port outcome",
                    tag,
                });
            }
        };
        let read = map(&mut r, "read")?;
        let wrote = map(&mut r, "wrote")?;
        r.finish()?;
        Ok(TcpResults {
            read,
            wrote,
            closed_port_connected,
            errors: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn plans() -> impl Strategy<Value = TcpPlan> {
        (0usize..4, 0usize..3, any::<bool>(), any::<u64>()).prop_flat_map(
            |(clients, servers, closed_port_connect, ring)| {
                proptest::collection::vec(
                    (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()),
                    clients + servers,
                )
                .prop_map(move |cs| TcpPlan {
                    clients,
                    servers,
                    closed_port_connect,
                    ring,
                    conversations: cs
                        .into_iter()
                        .map(|(to_guest, from_guest, chunk, key)| Conversation {
                            to_guest,
                            from_guest,
                            chunk,
                            key,
                        })
                        .collect(),
                })
            },
        )
    }

    fn results() -> impl Strategy<Value = TcpResults> {
        let bytes = || proptest::collection::vec(any::<u8>(), 0..40);
        (
            proptest::collection::btree_map(0usize..8, bytes(), 0..4),
            proptest::collection::btree_map(0usize..8, bytes(), 0..4),
            proptest::option::of(any::<bool>()),
        )
            .prop_map(|(read, wrote, closed_port_connected)| TcpResults {
                read,
                wrote,
                closed_port_connected,
                errors: Vec::new(),
            })
    }

    proptest! {
        #[test]
        fn plans_round_trip_and_every_truncation_is_an_error(plan in plans()) {
            let bytes = plan.encode();
            prop_assert_eq!(TcpPlan::decode(&bytes), Ok(plan));
            for cut in 0..bytes.len() {
                prop_assert!(TcpPlan::decode(&bytes[..cut]).is_err());
            }
        }

        #[test]
        fn results_round_trip_and_every_truncation_is_an_error(results in results()) {
            let bytes = results.encode();
            prop_assert_eq!(TcpResults::decode(&bytes), Ok(results));
            for cut in 0..bytes.len() {
                prop_assert!(TcpResults::decode(&bytes[..cut]).is_err());
            }
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = TcpPlan::decode(&bytes);
            let _ = TcpResults::decode(&bytes);
        }
    }

    #[test]
    fn a_plan_whose_conversations_do_not_match_its_peers_is_refused() {
        let mut plan = TcpPlan {
            clients: 1,
            servers: 1,
            conversations: alloc::vec![Conversation::default(); 2],
            ..TcpPlan::default()
        };
        plan.conversations.pop();
        assert!(TcpPlan::decode(&plan.encode()).is_err());
    }
}
