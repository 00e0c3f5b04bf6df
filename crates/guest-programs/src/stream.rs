//! `ring-stream`: the guest writes a seeded byte stream into one ring of the shared region and
//! closes it; the host reads it and checks every byte. It measures ring-pipe throughput through
//! a real vCPU and exercises the ring protocol under real hardware memory ordering. The writer
//! uses the same blocking protocol as every pipe end (`hv::blocking::write_all`); how it waits
//! for space is the caller's [`Sleep`](hv::blocking::Sleep).

use hv::blocking::{self, Sleep};
use ring_pipe::{Producer, RingError, RingLayout, SharedMemory};

const MAGIC: u32 = u32::from_le_bytes(*b"RSTR");
const VERSION: u32 = 1;
/// Magic, version, then seven u64 fields.
pub const ENCODED_LEN: usize = 8 + 7 * 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamPlan {
    /// Where the ring's header starts in the shared region.
    pub ring_offset: u64,
    pub capacity: u64,
    /// Bytes the guest writes before closing.
    pub total: u64,
    /// Bytes per `write_all` call.
    pub chunk: u64,
    /// Seeds the byte pattern.
    pub key: u64,
    /// The doorbell the guest rings when the host waits for data.
    pub doorbell: u64,
    /// Planted ring bugs on the guest's producer (`ring_pipe::planted`).
    pub ring_bugs: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamPlanError {
    Length(usize),
    BadMagic(u32),
    UnsupportedVersion(u32),
    /// A chunk of zero bytes, or one larger than the stream.
    BadChunk(u64),
}

impl core::fmt::Display for StreamPlanError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StreamPlanError::Length(n) => {
                write!(f, "stream plan is {n} bytes, expected {ENCODED_LEN}")
            }
            StreamPlanError::BadMagic(m) => write!(f, "stream plan magic {m:#x} is not RSTR"),
            StreamPlanError::UnsupportedVersion(v) => write!(f, "stream plan version {v}"),
            StreamPlanError::BadChunk(c) => write!(f, "stream chunk of {c} bytes"),
        }
    }
}

impl core::error::Error for StreamPlanError {}

impl StreamPlan {
    pub fn encode(&self) -> [u8; ENCODED_LEN] {
        let mut out = [0u8; ENCODED_LEN];
        out[..4].copy_from_slice(&MAGIC.to_le_bytes());
        out[4..8].copy_from_slice(&VERSION.to_le_bytes());
        let fields = [
            self.ring_offset,
            self.capacity,
            self.total,
            self.chunk,
            self.key,
            self.doorbell,
            self.ring_bugs,
        ];
        for (i, v) in fields.iter().enumerate() {
            out[8 + 8 * i..16 + 8 * i].copy_from_slice(&v.to_le_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, StreamPlanError> {
        let bytes: &[u8; ENCODED_LEN] = bytes
            .try_into()
            .map_err(|_| StreamPlanError::Length(bytes.len()))?;
        let word = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let field = |i: usize| {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&bytes[8 + 8 * i..16 + 8 * i]);
            u64::from_le_bytes(raw)
        };
        if word(0) != MAGIC {
            return Err(StreamPlanError::BadMagic(word(0)));
        }
        if word(4) != VERSION {
            return Err(StreamPlanError::UnsupportedVersion(word(4)));
        }
        let plan = StreamPlan {
            ring_offset: field(0),
            capacity: field(1),
            total: field(2),
            chunk: field(3),
            key: field(4),
            doorbell: field(5),
            ring_bugs: field(6),
        };
        if plan.chunk == 0 || plan.chunk > plan.total.max(1) {
            return Err(StreamPlanError::BadChunk(plan.chunk));
        }
        Ok(plan)
    }

    pub fn layout(&self, region_size: u64) -> Result<RingLayout, RingError> {
        RingLayout::new(self.ring_offset, self.capacity, region_size)
    }
}

/// Byte `index` of the stream seeded by `key`: cheap, and no two nearby positions alike, so a
/// lost, repeated or reordered chunk shows.
pub fn pattern_byte(key: u64, index: u64) -> u8 {
    let x = (index ^ key).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (x >> 56) as u8
}

/// Fills `buf` with the stream's bytes from position `start`.
pub fn fill(key: u64, start: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = pattern_byte(key, start + i as u64);
    }
}

/// The position of the first byte of `got` (read from position `start`) that differs from the
/// stream, if any.
pub fn first_mismatch(key: u64, start: u64, got: &[u8]) -> Option<u64> {
    got.iter()
        .enumerate()
        .find(|&(i, &b)| b != pattern_byte(key, start + i as u64))
        .map(|(i, _)| start + i as u64)
}

/// The guest's side: writes the whole stream in chunks through the ring at the plan's layout,
/// then closes it (and rings the doorbell so a waiting reader sees the end). The ring must have
/// been initialised by the host.
pub async fn produce<M: SharedMemory>(
    mem: M,
    plan: &StreamPlan,
    sleep: &impl Sleep,
    ring_doorbell: impl Fn(),
) -> Result<(), RingError> {
    let layout = plan.layout(mem.size())?;
    let mut tx = Producer::attach(mem, layout)
        .await?
        .with_planted(plan.ring_bugs as u32);
    let mut chunk = alloc::vec![0u8; plan.chunk as usize];
    let mut at = 0;
    while at < plan.total {
        let n = (plan.total - at).min(plan.chunk) as usize;
        fill(plan.key, at, &mut chunk[..n]);
        blocking::write_all(&mut tx, sleep, &ring_doorbell, &chunk[..n], false).await?;
        at += n as u64;
    }
    tx.close().await?;
    ring_doorbell();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_round_trips_and_bad_bytes_are_typed_errors() {
        let plan = StreamPlan {
            ring_offset: 64,
            capacity: 4096,
            total: 1 << 20,
            chunk: 1000,
            key: 7,
            doorbell: 2,
            ring_bugs: 0,
        };
        let bytes = plan.encode();
        assert_eq!(StreamPlan::decode(&bytes), Ok(plan));
        assert_eq!(
            StreamPlan::decode(&bytes[..10]),
            Err(StreamPlanError::Length(10))
        );
        let mut bad = bytes;
        bad[0] ^= 1;
        assert!(matches!(
            StreamPlan::decode(&bad),
            Err(StreamPlanError::BadMagic(_))
        ));
        let mut bad = bytes;
        bad[4] = 9;
        assert_eq!(
            StreamPlan::decode(&bad),
            Err(StreamPlanError::UnsupportedVersion(9))
        );
        let zero_chunk = StreamPlan { chunk: 0, ..plan };
        assert_eq!(
            StreamPlan::decode(&zero_chunk.encode()),
            Err(StreamPlanError::BadChunk(0))
        );
    }

    #[test]
    fn the_pattern_finds_a_shifted_stream() {
        let mut buf = [0u8; 300];
        fill(3, 100, &mut buf);
        assert_eq!(first_mismatch(3, 100, &buf), None);
        assert!(first_mismatch(3, 101, &buf).is_some());
    }
}
