//! The little-endian byte codec under every workload's wire format (echo and tcp plans, tcp
//! results, file plans, logs and placements). Inputs are untrusted (boot parameters, a guest's
//! reports): reading never panics, and every count is checked against the bytes left before
//! anything is allocated for it. Each format maps [`CodecError`] into its own error type.

use alloc::vec::Vec;

/// What can go wrong below any one format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CodecError {
    /// The input ends inside a field.
    Truncated { at: usize, needed: usize },
    /// A count or length the remaining input cannot hold.
    LengthTooLarge {
        what: &'static str,
        len: u64,
        remaining: usize,
    },
    /// A value that does not fit this machine's `usize`.
    ValueTooLarge { what: &'static str, value: u64 },
    /// An option tag other than 0 or 1.
    BadTag { what: &'static str, tag: u8 },
    /// Bytes after the last field.
    TrailingBytes(usize),
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
    rest: &'a [u8],
    /// Offset of `rest` in the input, for errors.
    at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes, at: 0 }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Refuses bytes after the last field.
    pub(crate) fn finish(&self) -> Result<(), CodecError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(CodecError::TrailingBytes(self.rest.len()))
        }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let Some((head, rest)) = self.rest.split_at_checked(n) else {
            return Err(CodecError::Truncated {
                at: self.at,
                needed: n,
            });
        };
        self.rest = rest;
        self.at += n;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, CodecError> {
        self.array().map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, CodecError> {
        self.array().map(u64::from_le_bytes)
    }

    pub(crate) fn usize(&mut self, what: &'static str) -> Result<usize, CodecError> {
        let value = self.u64()?;
        usize::try_from(value).map_err(|_| CodecError::ValueTooLarge { what, value })
    }

    pub(crate) fn tag(&mut self, what: &'static str) -> Result<bool, CodecError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(CodecError::BadTag { what, tag }),
        }
    }

    /// A count of items of at least `min_each` bytes each, checked against the bytes left so
    /// that no length field alone can make the decoder allocate.
    pub(crate) fn count(
        &mut self,
        what: &'static str,
        min_each: usize,
    ) -> Result<usize, CodecError> {
        let len = self.u64()?;
        let remaining = self.rest.len();
        match usize::try_from(len) {
            Ok(n) if n <= remaining / min_each => Ok(n),
            _ => Err(CodecError::LengthTooLarge {
                what,
                len,
                remaining,
            }),
        }
    }

    pub(crate) fn bytes(&mut self, what: &'static str) -> Result<Vec<u8>, CodecError> {
        let n = self.count(what, 1)?;
        Ok(self.take(n)?.to_vec())
    }
}
