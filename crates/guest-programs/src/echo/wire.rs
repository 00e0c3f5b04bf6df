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
        let mut r = Reader { rest: bytes, at: 0 };
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
                true => Some(r.writers()?),
            };
            pipes.push(PipePlan {
                ring,
                data,
                chunk,
                abandon_after,
                shared,
            });
        }
        if !r.rest.is_empty() {
            return Err(PlanError::TrailingBytes(r.rest.len()));
        }
        Ok(Plan {
            pipes,
            two_producers: flags & TWO_PRODUCERS != 0,
        })
    }
}

pub(crate) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_len(out: &mut Vec<u8>, n: usize) {
    // usize is at most 64 bits on every target this runs on.
    put_u64(out, n as u64);
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

pub(crate) struct Reader<'a> {
    pub(crate) rest: &'a [u8],
    /// Offset of `rest` in the input, for errors.
    at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes, at: 0 }
    }

    /// Refuses bytes after the last field.
    pub(crate) fn finish(&self) -> Result<(), PlanError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(PlanError::TrailingBytes(self.rest.len()))
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PlanError> {
        let Some((head, rest)) = self.rest.split_at_checked(n) else {
            return Err(PlanError::Truncated {
                at: self.at,
                needed: n,
            });
        };
        self.rest = rest;
        self.at += n;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], PlanError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, PlanError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, PlanError> {
        self.array().map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, PlanError> {
        self.array().map(u64::from_le_bytes)
    }

    pub(crate) fn usize(&mut self, what: &'static str) -> Result<usize, PlanError> {
        let value = self.u64()?;
        usize::try_from(value).map_err(|_| PlanError::ValueTooLarge { what, value })
    }

    pub(crate) fn tag(&mut self, what: &'static str) -> Result<bool, PlanError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(PlanError::BadTag { what, tag }),
        }
    }

    /// A count of items of at least `min_each` bytes each, checked against the bytes left so
    /// that no length field alone can make the decoder allocate.
    pub(crate) fn count(
        &mut self,
        what: &'static str,
        min_each: usize,
    ) -> Result<usize, PlanError> {
        let len = self.u64()?;
        let remaining = self.rest.len();
        match usize::try_from(len) {
            Ok(n) if n <= remaining / min_each => Ok(n),
            _ => Err(PlanError::LengthTooLarge {
                what,
                len,
                remaining,
            }),
        }
    }

    pub(crate) fn bytes(&mut self, what: &'static str) -> Result<Vec<u8>, PlanError> {
        let n = self.count(what, 1)?;
        Ok(self.take(n)?.to_vec())
    }

    fn writers(&mut self) -> Result<Vec<Vec<Vec<u8>>>, PlanError> {
        let writers = self.count("writer count", MIN_WRITER)?;
        if writers as u64 > MAX_WRITERS {
            return Err(PlanError::TooManyWriters(writers as u64));
        }
        let mut all = Vec::with_capacity(writers);
        for _ in 0..writers {
            let frames = self.count("frame count", MIN_FRAME)?;
            let mut own = Vec::with_capacity(frames);
            for _ in 0..frames {
                let n = self.count("frame", 1)?;
                if n > usize::from(u16::MAX) {
                    return Err(PlanError::FrameTooLong(n as u64));
                }
                own.push(self.take(n)?.to_vec());
            }
            all.push(own);
        }
        Ok(all)
    }
}
