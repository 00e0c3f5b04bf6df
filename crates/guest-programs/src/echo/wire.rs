//! A plan as boot parameters: the bytes a bare-metal guest is handed at start.
//!
//! Layout, all integers little-endian:
//!
//! ```text
//! magic u32 = "ECHP"   version u32 = 1   flags u8 (bit 0: two_producers)
//! pipe count u64, then per pipe:
//!   ring u64   chunk u64
//!   abandon tag u8 (0 none, 1 some) [abandon_after u64]
//!   data length u64, data bytes
//!   shared tag u8 (0 none, 1 some) [writer count u64, per writer:
//!     frame count u64, per frame: length u64, bytes]
//! ```
//!
//! The input is untrusted: decoding never panics, rejects trailing bytes, and checks every count
//! against the bytes left before allocating for it. It accepts only plans the workload can run
//! as written: at most 256 writers (one-byte tags) and frames of at most `u16::MAX` bytes.

use super::{PipePlan, Plan};
use crate::codec::{CodecError, Reader, put_bytes, put_len, put_u64};
use alloc::vec::Vec;
use core::fmt;

const MAGIC: u32 = u32::from_le_bytes(*b"ECHP");
const VERSION: u32 = 1;
const TWO_PRODUCERS: u8 = 1;

/// Smallest encodings, to bound a count by the bytes left: a pipe with no data, no abandon and
/// no sharing; a writer with no frames; an empty frame.
const MIN_PIPE: usize = 8 + 8 + 1 + 8 + 1;
const MIN_WRITER: usize = 8;
const MIN_FRAME: usize = 8;
const MAX_WRITERS: u64 = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// The input ends inside a field.
    Truncated {
        at: usize,
        needed: usize,
    },
    BadMagic(u32),
    UnsupportedVersion(u32),
    /// Flag bits this version does not define.
    BadFlags(u8),
    /// An option tag other than 0 or 1.
    BadTag {
        what: &'static str,
        tag: u8,
    },
    /// A count or length the remaining input cannot hold.
    LengthTooLarge {
        what: &'static str,
        len: u64,
        remaining: usize,
    },
    /// A value that does not fit this machine's `usize`.
    ValueTooLarge {
        what: &'static str,
        value: u64,
    },
    /// More writers than one-byte writer tags.
    TooManyWriters(u64),
    /// A frame longer than a tagged frame's `u16` length.
    FrameTooLong(u64),
    /// Bytes after the last pipe.
    TrailingBytes(usize),
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::Truncated { at, needed } => {
                write!(f, "input ends at byte {at}, inside a {needed}-byte field")
            }
            PlanError::BadMagic(m) => write!(f, "bad magic {m:#010x}, not a plan for this program"),
            PlanError::UnsupportedVersion(v) => write!(f, "unsupported plan version {v}"),
            PlanError::BadFlags(b) => write!(f, "undefined flag bits {b:#04x}"),
            PlanError::BadTag { what, tag } => write!(f, "{what}: option tag {tag} is not 0 or 1"),
            PlanError::LengthTooLarge {
                what,
                len,
                remaining,
            } => write!(
                f,
                "{what}: length {len} is too large for the {remaining} bytes left"
            ),
            PlanError::ValueTooLarge { what, value } => {
                write!(f, "{what}: {value} does not fit in usize")
            }
            PlanError::TooManyWriters(n) => {
                write!(f, "{n} writers on a shared pipe (at most {MAX_WRITERS})")
            }
            PlanError::FrameTooLong(n) => {
                write!(f, "frame of {n} bytes (at most {})", u16::MAX)
            }
            PlanError::TrailingBytes(n) => write!(f, "{n} bytes after the plan"),
        }
    }
}

impl core::error::Error for PlanError {}

impl Plan {
    /// The plan as boot parameters (see the module docs for the layout).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.push(if self.two_producers { TWO_PRODUCERS } else { 0 });
        put_len(&mut out, self.pipes.len());
        for p in &self.pipes {
            put_u64(&mut out, p.ring);
            put_len(&mut out, p.chunk);
            match p.abandon_after {
                None => out.push(0),
                Some(n) => {
                    out.push(1);
                    put_len(&mut out, n);
                }
            }
            put_bytes(&mut out, &p.data);
            match &p.shared {
                None => out.push(0),
                Some(writers) => {
                    out.push(1);
                    put_len(&mut out, writers.len());
                    for frames in writers {
                        put_len(&mut out, frames.len());
                        for frame in frames {
                            put_bytes(&mut out, frame);
                        }
                    }
                }
            }
        }
        out
    }

    /// Reads a plan from untrusted boot parameters.
    pub fn decode(bytes: &[u8]) -> Result<Plan, PlanError> {
        let mut r = Reader::new(bytes);
        let magic = r.u32()?;
        if magic != MAGIC {
            return Err(PlanError::BadMagic(magic));
        }
        let version = r.u32()?;
        if version != VERSION {
            return Err(PlanError::UnsupportedVersion(version));
        }
        let flags = r.u8()?;
        if flags & !TWO_PRODUCERS != 0 {
            return Err(PlanError::BadFlags(flags));
        }
        let count = r.count("pipe count", MIN_PIPE)?;
        let mut pipes = Vec::with_capacity(count);
        for _ in 0..count {
            let ring = r.u64()?;
            let chunk = r.usize("chunk")?;
            let abandon_after = match r.tag("abandon")? {
                false => None,
                true => Some(r.usize("abandon_after")?),
            };
            let data = r.bytes("data")?;
            let shared = match r.tag("shared")? {
                false => None,
                true => Some(writers(&mut r)?),
            };
            pipes.push(PipePlan {
                ring,
                data,
                chunk,
                abandon_after,
                shared,
            });
        }
        r.finish()?;
        Ok(Plan {
            pipes,
            two_producers: flags & TWO_PRODUCERS != 0,
        })
    }
}

fn writers(r: &mut Reader<'_>) -> Result<Vec<Vec<Vec<u8>>>, PlanError> {
    let writers = r.count("writer count", MIN_WRITER)?;
    if writers as u64 > MAX_WRITERS {
        return Err(PlanError::TooManyWriters(writers as u64));
    }
    let mut all = Vec::with_capacity(writers);
    for _ in 0..writers {
        let frames = r.count("frame count", MIN_FRAME)?;
        let mut own = Vec::with_capacity(frames);
        for _ in 0..frames {
            let n = r.count("frame", 1)?;
            if n > usize::from(u16::MAX) {
                return Err(PlanError::FrameTooLong(n as u64));
            }
            own.push(r.take(n)?.to_vec());
        }
        all.push(own);
    }
    Ok(all)
}

impl From<CodecError> for PlanError {
    fn from(e: CodecError) -> Self {
        match e {
            CodecError::Truncated { at, needed } => PlanError::Truncated { at, needed },
            CodecError::LengthTooLarge {
                what,
                len,
                remaining,
            } => PlanError::LengthTooLarge {
                what,
                len,
                remaining,
            },
            CodecError::ValueTooLarge { what, value } => PlanError::ValueTooLarge { what, value },
            CodecError::BadTag { what, tag } => PlanError::BadTag { what, tag },
            CodecError::TrailingBytes(n) => PlanError::TrailingBytes(n),
        }
    }
}
