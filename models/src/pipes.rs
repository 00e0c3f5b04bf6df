//! Oracles for ring pipes, judged from committed shared memory and from what each side
//! observably sent and received — never from the rings' own bookkeeping.
//!
//! - Wake conditions (for liveness at quiescence): a party parked for data must not stay parked
//!   while its incoming ring has unread bytes or its writer closed; a party parked for space must
//!   not stay parked while its outgoing ring has room or its reader closed. They read the ring
//!   header from committed memory, at the fixed offsets of the ring layout.
//! - Byte conservation per direction: what was received is exactly what was sent (or, for a
//!   direction the receiver abandoned, a prefix of it).
//! - Frame integrity: a stream of tagged frames from several writers parses completely, and each
//!   writer's frames arrive intact and in order.

use crate::Violation;
use simkit::Memory;

/// Where one ring lives (mirrors the ring-pipe layout: header of u64 fields, then data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingAt {
    pub base: u64,
    pub capacity: u64,
}

fn word(mem: &Memory, addr: u64) -> Option<u64> {
    mem.committed(addr, 8).ok().map(|b| {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(b);
        u64::from_le_bytes(raw)
    })
}

/// Header fields by offset: read cursor 0, write cursor 8, writer closed 16, reader closed 24.
struct Header {
    read: u64,
    write: u64,
    writer_closed: bool,
    reader_closed: bool,
}

fn header(mem: &Memory, ring: RingAt) -> Option<Header> {
    Some(Header {
        read: word(mem, ring.base)?,
        write: word(mem, ring.base + 8)?,
        writer_closed: word(mem, ring.base + 16)? != 0,
        reader_closed: word(mem, ring.base + 24)? != 0,
    })
}

/// A reader of `ring` should be awake: bytes are waiting or the writer closed.
pub fn readable_or_closed(mem: &Memory, ring: RingAt) -> bool {
    header(mem, ring).is_some_and(|h| h.write != h.read || h.writer_closed)
}

/// A writer to `ring` should be awake: there is room or the reader closed.
pub fn writable_or_closed(mem: &Memory, ring: RingAt) -> bool {
    header(mem, ring)
        .is_some_and(|h| h.write.wrapping_sub(h.read) < ring.capacity || h.reader_closed)
}

/// Byte conservation for one direction of one pipe (`pipe` as every oracle names it:
/// `pipe 3`, by its id on the wire).
pub fn check_direction(
    pipe: impl AsRef<str>,
    direction: &str,
    sent: &[u8],
    received: &[u8],
    abandoned: bool,
) -> Vec<Violation> {
    let pipe = pipe.as_ref();
    check_stream(&format!("{pipe} {direction}"), sent, received, abandoned)
        .into_iter()
        .map(|v| v.object(pipe))
        .collect()
}

/// Byte conservation for one named stream (a pipe direction, or one direction of a TCP
/// connection end to end): received is exactly what was sent, or a prefix of it if the receiver
/// abandoned the stream.
pub fn check_stream(stream: &str, sent: &[u8], received: &[u8], abandoned: bool) -> Vec<Violation> {
    let ok = if abandoned {
        sent.starts_with(received)
    } else {
        sent == received
    };
    if ok {
        return Vec::new();
    }
    let at = sent.iter().zip(received).position(|(a, b)| a != b);
    let (kind, what) = match at {
        Some(i) => ("corrupt-bytes", format!("first differing byte at {i}")),
        None if received.len() > sent.len() => (
            "extra-bytes",
            format!("{} bytes more than sent", received.len() - sent.len()),
        ),
        None => (
            "missing-bytes",
            format!(
                "{} of {} bytes missing at the end",
                sent.len() - received.len(),
                sent.len()
            ),
        ),
    };
    vec![
        Violation::new(
            "conservation",
            format!(
                "{stream}: sent {} bytes, received {} ({what})",
                sent.len(),
                received.len()
            ),
        )
        .kind(kind)
        .object(stream),
    ]
}

/// A tagged frame: `writer: u8`, `seq: u32 LE`, `len: u16 LE`, then `len` payload bytes.
pub fn tagged_frame(writer: u8, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![writer];
    f.extend_from_slice(&seq.to_le_bytes());
    f.extend_from_slice(&(payload.len() as u16).to_le_bytes());
    f.extend_from_slice(payload);
    f
}

/// Frame integrity of a stream interleaving several writers' tagged frames: every frame parses,
/// and writer `w`'s frames are exactly `expected[w]`, in order.
pub fn check_tagged_stream(
    pipe: impl AsRef<str>,
    stream: &[u8],
    expected: &[Vec<Vec<u8>>],
) -> Vec<Violation> {
    let pipe = pipe.as_ref();
    let mut next = vec![0usize; expected.len()];
    let mut pos = 0;
    let fail = |msg: String| {
        vec![Violation::new("frame-integrity", format!("{pipe}: {msg}")).object(pipe)]
    };
    while pos < stream.len() {
        if stream.len() - pos < 7 {
            return fail(format!("stream ends inside a frame header at byte {pos}"));
        }
        let writer = stream[pos] as usize;
        let seq = u32::from_le_bytes([
            stream[pos + 1],
            stream[pos + 2],
            stream[pos + 3],
            stream[pos + 4],
        ]) as usize;
        let len = u16::from_le_bytes([stream[pos + 5], stream[pos + 6]]) as usize;
        let Some(frames) = expected.get(writer) else {
            return fail(format!(
                "frame at byte {pos} names writer {writer}, which does not exist"
            ));
        };
        if seq != next[writer] || seq >= frames.len() {
            return fail(format!(
                "frame at byte {pos}: writer {writer} sequence {seq}, expected {}",
                next[writer]
            ));
        }
        let body = &stream[pos + 7..(pos + 7 + len).min(stream.len())];
        if body != frames[seq].as_slice() {
            return fail(format!(
                "frame at byte {pos}: writer {writer} frame {seq} payload corrupted"
            ));
        }
        next[writer] += 1;
        pos += 7 + len;
    }
    for (w, frames) in expected.iter().enumerate() {
        if next[w] != frames.len() {
            return fail(format!(
                "writer {w}: {} of {} frames delivered",
                next[w],
                frames.len()
            ));
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conservation_names_the_difference() {
        assert!(check_direction("pipe 1", "up", b"abc", b"abc", false).is_empty());
        assert!(check_direction("pipe 1", "up", b"abc", b"ab", true).is_empty());
        let missing = &check_direction("pipe 1", "up", b"abc", b"ab", false)[0];
        assert!(missing.message.contains("missing"));
        assert_eq!(missing.kind, Some("missing-bytes"));
        assert_eq!(missing.object.as_deref(), Some("pipe 1"));
        assert!(
            check_direction("pipe 1", "up", b"abc", b"abd", false)[0]
                .message
                .contains("byte at 2")
        );
        assert!(
            check_direction("pipe 1", "up", b"abc", b"abcd", true)[0]
                .message
                .contains("more than sent")
        );
    }

    #[test]
    fn tagged_streams_parse_or_name_the_fault() {
        let expected = vec![vec![b"a1".to_vec(), b"a2".to_vec()], vec![b"b1".to_vec()]];
        let mut good = tagged_frame(0, 0, b"a1");
        good.extend(tagged_frame(1, 0, b"b1"));
        good.extend(tagged_frame(0, 1, b"a2"));
        assert!(check_tagged_stream("pipe 3", &good, &expected).is_empty());
        let mut reordered = tagged_frame(0, 1, b"a2");
        reordered.extend(tagged_frame(0, 0, b"a1"));
        assert!(
            check_tagged_stream("pipe 3", &reordered, &expected)[0]
                .message
                .contains("sequence 1")
        );
        let mut torn = good.clone();
        torn[8] ^= 1;
        assert!(!check_tagged_stream("pipe 3", &torn, &expected).is_empty());
        assert!(
            check_tagged_stream("pipe 3", &good[..5], &expected)[0]
                .message
                .contains("inside a frame header")
        );
    }
}

/// A pipe placement event as the guest saw it on the control pipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlacementEvent {
    /// PipeReady: `id` occupies `[offset, offset + len)`.
    Ready { id: u64, offset: u64, len: u64 },
    /// The guest's ClosePipe for `id` was acknowledged.
    Closed { id: u64 },
}

/// Region ownership: no pipe is placed over a pipe the guest has not closed yet.
pub fn check_placements(events: &[PlacementEvent]) -> Vec<Violation> {
    let mut live: Vec<(u64, u64, u64)> = Vec::new();
    for e in events {
        match *e {
            PlacementEvent::Ready { id, offset, len } => {
                if let Some((other, ..)) = live
                    .iter()
                    .find(|(_, o, l)| offset < o + l && *o < offset + len)
                {
                    return vec![Violation::new(
                        "region-ownership",
                        format!(
                            "pipe {id} placed at {offset}+{len} over pipe {other}, which the guest has not closed"
                        ),
                    )];
                }
                live.push((id, offset, len));
            }
            PlacementEvent::Closed { id } => live.retain(|(i, ..)| *i != id),
        }
    }
    Vec::new()
}
