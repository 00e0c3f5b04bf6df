//! RPC messages over a byte stream (a TCP connection, a pipe): the standard Cap'n Proto stream
//! framing, where each message is its segment table followed by its segments, back to back.
//!
//! [`read_message`] treats the stream as hostile, like [`decode`]: it reads the segment table
//! itself so that it can refuse an absurd one before allocating anything ([`MAX_SEGMENTS`],
//! [`MAX_MESSAGE_WORDS`]), then hands the whole frame to [`decode`] with its reader limits. The
//! end of the stream at a message boundary is [`StreamError::Closed`]; anywhere else it is
//! [`StreamError::Truncated`].
//!
//! A read error (a timeout, say) in the middle of a message leaves the stream out of step: the
//! caller should give up on the connection, as it must after every other error here but
//! [`StreamError::Wire`] (after which the stream is still at a message boundary).

use crate::wire::{Message, TRAVERSAL_LIMIT_WORDS, WireError, decode, encode};
use core::fmt;
use std::io::{self, Read, Write};

/// Most segments a message may have (capnp's own reader allows 512 too).
pub const MAX_SEGMENTS: usize = 512;
/// Largest message, in 8-byte words (8 MiB, the traversal limit of [`decode`]).
pub const MAX_MESSAGE_WORDS: usize = TRAVERSAL_LIMIT_WORDS;

/// Why no message could be read from or written to a stream.
#[derive(Debug)]
pub enum StreamError {
    /// The stream ended cleanly, between two messages.
    Closed,
    /// The stream ended inside a message.
    Truncated { read: usize, needed: usize },
    /// The segment table announces more than [`MAX_SEGMENTS`] segments.
    TooManySegments { count: u64 },
    /// The segment table announces more than [`MAX_MESSAGE_WORDS`] words.
    TooLarge { words: u64 },
    /// The frame was read whole but is not a valid RPC message.
    Wire(WireError),
    /// The stream failed (including a read or write timeout).
    Io(io::Error),
}

impl std::error::Error for StreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StreamError::Wire(e) => Some(e),
            StreamError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::Closed => f.write_str("the stream closed between messages"),
            StreamError::Truncated { read, needed } => write!(
                f,
                "the stream closed inside a message ({read} of {needed} bytes of a frame part)"
            ),
            StreamError::TooManySegments { count } => write!(
                f,
                "a message announces {count} segments, more than the limit of {MAX_SEGMENTS}"
            ),
            StreamError::TooLarge { words } => write!(
                f,
                "a message announces {words} words, more than the limit of {MAX_MESSAGE_WORDS}"
            ),
            StreamError::Wire(e) => write!(f, "bad RPC message on the stream: {e}"),
            StreamError::Io(e) => write!(f, "stream I/O failed: {e}"),
        }
    }
}

impl From<WireError> for StreamError {
    fn from(e: WireError) -> Self {
        StreamError::Wire(e)
    }
}

/// Reads `buf.len()` bytes; `Ok(false)` if the stream ends before the first byte.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> Result<bool, StreamError> {
    let mut read = 0;
    while read < buf.len() {
        match r.read(&mut buf[read..]) {
            Ok(0) if read == 0 => return Ok(false),
            Ok(0) => {
                return Err(StreamError::Truncated {
                    read,
                    needed: buf.len(),
                });
            }
            Ok(n) => read += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(StreamError::Io(e)),
        }
    }
    Ok(true)
}

/// Like [`fill`], but the stream ending anywhere is truncation.
fn fill_inside(r: &mut impl Read, buf: &mut [u8]) -> Result<(), StreamError> {
    if buf.is_empty() || fill(r, buf)? {
        Ok(())
    } else {
        Err(StreamError::Truncated {
            read: 0,
            needed: buf.len(),
        })
    }
}

/// Reads one framed message (segment table and segments) without decoding it.
pub fn read_frame(r: &mut impl Read) -> Result<Vec<u8>, StreamError> {
    let mut first = [0u8; 8];
    // The first word: the segment count minus one, and the first segment's size.
    if !fill(r, &mut first[..4])? {
        return Err(StreamError::Closed);
    }
    fill_inside(r, &mut first[4..])?;
    let count = u64::from(u32::from_le_bytes([first[0], first[1], first[2], first[3]])) + 1;
    if count > MAX_SEGMENTS as u64 {
        return Err(StreamError::TooManySegments { count });
    }
    let count = count as usize;
    // The rest of the table: the other sizes, padded to a whole word.
    let table_len = (4 + 4 * count).div_ceil(8) * 8;
    let mut frame = Vec::with_capacity(table_len);
    frame.extend_from_slice(&first);
    frame.resize(table_len, 0);
    fill_inside(r, &mut frame[8..])?;
    let mut words: u64 = 0;
    for i in 0..count {
        let at = 4 + 4 * i;
        let size = u32::from_le_bytes([frame[at], frame[at + 1], frame[at + 2], frame[at + 3]]);
        words += u64::from(size);
    }
    if words > MAX_MESSAGE_WORDS as u64 {
        return Err(StreamError::TooLarge { words });
    }
    frame.resize(table_len + words as usize * 8, 0);
    fill_inside(r, &mut frame[table_len..])?;
    Ok(frame)
}

/// Reads and decodes one message.
pub fn read_message(r: &mut impl Read) -> Result<Message, StreamError> {
    let frame = read_frame(r)?;
    Ok(decode(&frame)?)
}

/// Encodes and writes one message, then flushes the writer.
pub fn write_message(w: &mut impl Write, msg: &Message) -> Result<(), StreamError> {
    w.write_all(&encode(msg)).map_err(StreamError::Io)?;
    w.flush().map_err(StreamError::Io)
}

#[cfg(test)]
mod tests;
