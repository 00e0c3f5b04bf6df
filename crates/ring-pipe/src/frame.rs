//! Length-prefixed frames on a byte stream: `len: u32 LE` then `len` payload bytes.
//!
//! The decoder accepts bytes in any chunking. A length above the limit is a typed error, after
//! which the stream is out of sync: the decoder stays poisoned (every later call reports
//! `Desynchronised`) so the caller closes the pipe cleanly instead of parsing garbage.

use alloc::vec::Vec;

/// Largest payload a frame may carry.
pub const MAX_FRAME_LEN: usize = 64 * 1024;
const PREFIX: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix announces more than the limit.
    TooLarge { len: u64, max: u64 },
    /// An earlier error left the stream out of sync.
    Desynchronised,
    /// The output buffer is too small for the frame.
    BufferTooSmall { need: usize },
    /// The stream ended in the middle of a frame.
    Truncated { missing: usize },
}

impl core::error::Error for FrameError {}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FrameError::TooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the limit of {max}")
            }
            FrameError::Desynchronised => {
                f.write_str("frame stream is out of sync after an earlier error")
            }
            FrameError::BufferTooSmall { need } => {
                write!(f, "output buffer too small: frame needs {need} bytes")
            }
            FrameError::Truncated { missing } => {
                write!(f, "stream ended {missing} bytes short of a complete frame")
            }
        }
    }
}

/// Writes one frame into `out`; returns the bytes used.
pub fn encode_frame(payload: &[u8], out: &mut [u8]) -> Result<usize, FrameError> {
    if payload.len() > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge {
            len: payload.len() as u64,
            max: MAX_FRAME_LEN as u64,
        });
    }
    let need = PREFIX + payload.len();
    if out.len() < need {
        return Err(FrameError::BufferTooSmall { need });
    }
    out[..PREFIX].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    out[PREFIX..need].copy_from_slice(payload);
    Ok(need)
}

/// A frame as a new vector.
pub fn frame_to_vec(payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    let mut out = alloc::vec![0u8; PREFIX + payload.len()];
    encode_frame(payload, &mut out)?;
    Ok(out)
}

#[derive(Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    poisoned: bool,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if !self.poisoned {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// The next complete frame, if one is buffered.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        if self.poisoned {
            return Err(FrameError::Desynchronised);
        }
        if self.buf.len() < PREFIX {
            return Ok(None);
        }
        let mut raw = [0u8; PREFIX];
        raw.copy_from_slice(&self.buf[..PREFIX]);
        let len = u32::from_le_bytes(raw) as usize;
        if len > MAX_FRAME_LEN {
            self.poisoned = true;
            self.buf.clear();
            return Err(FrameError::TooLarge {
                len: len as u64,
                max: MAX_FRAME_LEN as u64,
            });
        }
        if self.buf.len() < PREFIX + len {
            return Ok(None);
        }
        let frame = self.buf[PREFIX..PREFIX + len].to_vec();
        self.buf.drain(..PREFIX + len);
        Ok(Some(frame))
    }

    /// Bytes buffered but not yet part of a complete frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Takes the buffered bytes that follow the last complete frame: a protocol that switches
    /// from frames to raw bytes must not lose what was read along with its last frame.
    pub fn take_pending(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.buf)
    }

    /// At end of stream: an error if a partial frame is left over.
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.poisoned {
            return Err(FrameError::Desynchronised);
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        let missing = if self.buf.len() < PREFIX {
            PREFIX - self.buf.len()
        } else {
            let mut raw = [0u8; PREFIX];
            raw.copy_from_slice(&self.buf[..PREFIX]);
            (PREFIX + u32::from_le_bytes(raw) as usize).saturating_sub(self.buf.len())
        };
        Err(FrameError::Truncated { missing })
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;

    #[test]
    fn oversized_frame_poisons_the_stream() {
        let mut d = FrameDecoder::new();
        d.push(&(MAX_FRAME_LEN as u32 + 1).to_le_bytes());
        assert!(matches!(d.next_frame(), Err(FrameError::TooLarge { .. })));
        d.push(&frame_to_vec(b"ok").expect("small"));
        assert_eq!(d.next_frame(), Err(FrameError::Desynchronised));
        assert_eq!(d.finish(), Err(FrameError::Desynchronised));
    }

    #[test]
    fn truncated_stream_is_reported() {
        let mut d = FrameDecoder::new();
        d.push(&[5, 0, 0, 0, b'a', b'b']);
        assert_eq!(d.next_frame(), Ok(None));
        assert_eq!(d.finish(), Err(FrameError::Truncated { missing: 3 }));
    }

    #[test]
    fn encode_checks_limits() {
        let mut small = [0u8; 3];
        assert_eq!(
            encode_frame(b"", &mut small),
            Err(FrameError::BufferTooSmall { need: 4 })
        );
        let big = vec![0u8; MAX_FRAME_LEN + 1];
        assert!(matches!(
            frame_to_vec(&big),
            Err(FrameError::TooLarge { .. })
        ));
    }

    proptest! {
        /// Any sequence of frames, delivered in any chunking, decodes to the same payloads.
        #[test]
        fn round_trip_under_any_chunking(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20),
            cuts in proptest::collection::vec(1usize..64, 1..50),
        ) {
            let mut stream = Vec::new();
            for p in &payloads {
                stream.extend(frame_to_vec(p).expect("within limit"));
            }
            let mut d = FrameDecoder::new();
            let mut out = Vec::new();
            let mut pos = 0;
            for c in cuts.iter().cycle() {
                if pos >= stream.len() { break; }
                let end = (pos + c).min(stream.len());
                d.push(&stream[pos..end]);
                pos = end;
                while let Some(f) = d.next_frame().expect("well-formed") {
                    out.push(f);
                }
            }
            prop_assert_eq!(out, payloads);
            prop_assert_eq!(d.finish(), Ok(()));
        }

        /// Arbitrary bytes never panic the decoder.
        #[test]
        fn arbitrary_bytes_are_safe(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut d = FrameDecoder::new();
            d.push(&bytes);
            while let Ok(Some(_)) = d.next_frame() {}
            let _ = d.finish();
        }
    }
}
