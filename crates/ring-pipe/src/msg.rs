//! Control and data-pipe messages, and their wire encoding.
//!
//! Encoding: one tag byte, then fields in order; integers are little-endian u64 (or i64) — never
//! `usize`, so both sides agree whatever their word size; byte strings and text are a u64
//! length then the bytes. Decoding checks every length against what is left and against a limit,
//! rejects unknown tags and trailing bytes, and reports a typed error: the host decodes frames
//! from an untrusted guest.
//!
//! Protocol. The control pipe carries `ControlRequest`s from the guest and `ControlReply`s from
//! the host, matched by `request_id`. A new data pipe's first frame (guest to host) is a
//! `Protocol`; then:
//! - `File`: `FileRequest` frames, each answered by a `FileReply` frame;
//! - `TcpListen`: the host answers `ListenerReply::Listening`; the guest then sends
//!   `ListenerRequest::Accept { pipe_id }` naming a fresh pipe, answered by `Incoming` once a
//!   client connects. The guest's first frame on that pipe is `TcpAccepted`; the host answers
//!   one `StreamReply` frame and the pipe then carries the connection's raw bytes. Closing the
//!   listener pipe stops listening;
//! - `TcpConnect`: the host answers one `StreamReply` frame, then the pipe carries raw bytes both
//!   ways; closing one ring is a half-close;
//! - `Echo`: raw bytes, echoed back by the host.

use crate::frame::MAX_FRAME_LEN;
use alloc::string::String;
use alloc::vec::Vec;

/// Longest path or host name accepted.
/// The control pipe's rings.
pub const CONTROL_RING_SIZE: u64 = 4096;
/// The control pipe's doorbells are 0 (data) and 1 (space); pipe `n` uses `2n` and `2n + 1`.
pub const CONTROL_DOORBELL: u64 = 0;

/// Where the control pipe lives: at the start of the shared region, known to both sides at boot.
pub fn control_pipe_info() -> PipeInfo {
    PipeInfo {
        pipe_id: 0,
        shm_offset: 0,
        ring_size: CONTROL_RING_SIZE,
        host_doorbell: CONTROL_DOORBELL,
        guest_irq: 0,
    }
}

pub const MAX_TEXT_LEN: u64 = 4096;

/// Error codes on the wire (errno values, so the guest can map them).
pub mod code {
    pub const NOT_FOUND: u64 = 2;
    pub const IO: u64 = 5;
    pub const BAD_ID: u64 = 9;
    pub const EXISTS: u64 = 17;
    pub const INVALID: u64 = 22;
    pub const TOO_LARGE: u64 = 27;
    pub const NO_SPACE: u64 = 28;
    pub const ADDR_IN_USE: u64 = 98;
    pub const RESET: u64 = 104;
    pub const REFUSED: u64 = 111;
}

/// File open flags.
pub mod file_flags {
    pub const READ: u64 = 1;
    pub const WRITE: u64 = 2;
    pub const CREATE: u64 = 4;
    pub const APPEND: u64 = 8;
    pub const TRUNCATE: u64 = 16;
    pub const ALL: u64 = READ | WRITE | CREATE | APPEND | TRUNCATE;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    Empty,
    UnknownTag {
        message: &'static str,
        tag: u8,
    },
    Truncated {
        message: &'static str,
    },
    TooLong {
        message: &'static str,
        len: u64,
        max: u64,
    },
    BadUtf8 {
        message: &'static str,
    },
    BadValue {
        message: &'static str,
        field: &'static str,
    },
    TrailingBytes {
        message: &'static str,
        extra: usize,
    },
}

impl core::error::Error for DecodeError {}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DecodeError::Empty => f.write_str("empty message"),
            DecodeError::UnknownTag { message, tag } => write!(f, "{message}: unknown tag {tag}"),
            DecodeError::Truncated { message } => write!(f, "{message}: truncated"),
            DecodeError::TooLong { message, len, max } => {
                write!(f, "{message}: length {len} exceeds {max}")
            }
            DecodeError::BadUtf8 { message } => write!(f, "{message}: text is not UTF-8"),
            DecodeError::BadValue { message, field } => write!(f, "{message}: invalid {field}"),
            DecodeError::TrailingBytes { message, extra } => {
                write!(f, "{message}: {extra} trailing bytes")
            }
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    message: &'static str,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], message: &'static str) -> Result<(Self, u8), DecodeError> {
        let (&tag, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
        Ok((
            Self {
                bytes: rest,
                message,
            },
            tag,
        ))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(DecodeError::Truncated {
                message: self.message,
            });
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(raw))
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(self.u64()? as i64)
    }

    fn bytes(&mut self, max: u64) -> Result<Vec<u8>, DecodeError> {
        let len = self.u64()?;
        if len > max {
            return Err(DecodeError::TooLong {
                message: self.message,
                len,
                max,
            });
        }
        Ok(self.take(len as usize)?.to_vec())
    }

    fn text(&mut self) -> Result<String, DecodeError> {
        String::from_utf8(self.bytes(MAX_TEXT_LEN)?).map_err(|_| DecodeError::BadUtf8 {
            message: self.message,
        })
    }

    fn unknown<T>(&self, tag: u8) -> Result<T, DecodeError> {
        Err(DecodeError::UnknownTag {
            message: self.message,
            tag,
        })
    }

    fn done<T>(self, value: T) -> Result<T, DecodeError> {
        if self.bytes.is_empty() {
            Ok(value)
        } else {
            Err(DecodeError::TrailingBytes {
                message: self.message,
                extra: self.bytes.len(),
            })
        }
    }
}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn tag(self, tag: u8) -> Self {
        self.0.push(tag);
        self
    }
    fn u64(self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn i64(self, v: i64) -> Self {
        self.u64(v as u64)
    }
    fn bytes(self, b: &[u8]) -> Self {
        let w = self.u64(b.len() as u64);
        w.0.extend_from_slice(b);
        w
    }
}

/// A message with a wire form.
pub trait Wire: Sized {
    fn encode_into(&self, out: &mut Vec<u8>);
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError>;

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlRequest {
    NewPipe { request_id: u64, ring_size: u64 },
    ClosePipe { request_id: u64, pipe_id: u64 },
}

/// Where a new pipe lives: two rings of `ring_size` bytes each (guest-to-host first), and its
/// doorbells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PipeInfo {
    pub pipe_id: u64,
    pub shm_offset: u64,
    pub ring_size: u64,
    /// What the guest writes to ring the host (ioeventfd datamatch / hypercall argument).
    pub host_doorbell: u64,
    /// The interrupt line the host raises for this pipe.
    pub guest_irq: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlReply {
    PipeReady { request_id: u64, pipe: PipeInfo },
    PipeClosed { request_id: u64 },
    Error { request_id: u64, code: u64 },
}

impl ControlReply {
    pub fn request_id(&self) -> u64 {
        match self {
            ControlReply::PipeReady { request_id, .. }
            | ControlReply::PipeClosed { request_id }
            | ControlReply::Error { request_id, .. } => *request_id,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Protocol {
    Echo,
    File {
        path: String,
        flags: u64,
    },
    TcpListen {
        port: u64,
    },
    TcpConnect {
        host: String,
        port: u64,
    },
    /// This pipe carries the connection a listener accepted for it (`ListenerReply::Incoming`).
    TcpAccepted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Whence {
    Start,
    Current,
    End,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileRequest {
    Read { len: u64 },
    Write { data: Vec<u8> },
    Seek { offset: i64, whence: Whence },
    Close,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileReply {
    Opened,
    Data { data: Vec<u8> },
    Wrote { len: u64 },
    Seeked { pos: u64 },
    Closed,
    Error { code: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenerRequest {
    Accept { pipe_id: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenerReply {
    Listening { port: u64 },
    Incoming { pipe_id: u64, peer: String },
    Error { code: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamReply {
    Connected,
    Error { code: u64 },
}

fn port(r: &mut Reader<'_>) -> Result<u64, DecodeError> {
    let p = r.u64()?;
    if p > u64::from(u16::MAX) {
        return Err(DecodeError::BadValue {
            message: r.message,
            field: "port",
        });
    }
    Ok(p)
}

impl Wire for ControlRequest {
    fn encode_into(&self, out: &mut Vec<u8>) {
        let w = Writer(out);
        match self {
            ControlRequest::NewPipe {
                request_id,
                ring_size,
            } => w.tag(1).u64(*request_id).u64(*ring_size),
            ControlRequest::ClosePipe {
                request_id,
                pipe_id,
            } => w.tag(2).u64(*request_id).u64(*pipe_id),
        };
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (mut r, tag) = Reader::new(bytes, "ControlRequest")?;
        let v = match tag {
            1 => ControlRequest::NewPipe {
                request_id: r.u64()?,
                ring_size: r.u64()?,
            },
            2 => ControlRequest::ClosePipe {
                request_id: r.u64()?,
                pipe_id: r.u64()?,
            },
            t => return r.unknown(t),
        };
        r.done(v)
    }
}

impl Wire for ControlReply {
    fn encode_into(&self, out: &mut Vec<u8>) {
        let w = Writer(out);
        match self {
            ControlReply::PipeReady { request_id, pipe } => w
                .tag(1)
                .u64(*request_id)
                .u64(pipe.pipe_id)
                .u64(pipe.shm_offset)
                .u64(pipe.ring_size)
                .u64(pipe.host_doorbell)
                .u64(pipe.guest_irq),
            ControlReply::PipeClosed { request_id } => w.tag(2).u64(*request_id),
            ControlReply::Error { request_id, code } => w.tag(3).u64(*request_id).u64(*code),
        };
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (mut r, tag) = Reader::new(bytes, "ControlReply")?;
        let v = match tag {
            1 => ControlReply::PipeReady {
                request_id: r.u64()?,
                pipe: PipeInfo {
                    pipe_id: r.u64()?,
                    shm_offset: r.u64()?,
                    ring_size: r.u64()?,
                    host_doorbell: r.u64()?,
                    guest_irq: r.u64()?,
                },
            },
            2 => ControlReply::PipeClosed {
                request_id: r.u64()?,
            },
            3 => ControlReply::Error {
                request_id: r.u64()?,
                code: r.u64()?,
            },
            t => return r.unknown(t),
        };
        r.done(v)
    }
}

impl Wire for Protocol {
    fn encode_into(&self, out: &mut Vec<u8>) {
        let w = Writer(out);
        match self {
            Protocol::Echo => w.tag(0),
            Protocol::File { path, flags } => w.tag(1).bytes(path.as_bytes()).u64(*flags),
            Protocol::TcpListen { port } => w.tag(2).u64(*port),
            Protocol::TcpConnect { host, port } => w.tag(3).bytes(host.as_bytes()).u64(*port),
            Protocol::TcpAccepted => w.tag(4),
        };
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (mut r, tag) = Reader::new(bytes, "Protocol")?;
        let v = match tag {
            0 => Protocol::Echo,
            1 => {
                let path = r.text()?;
                let flags = r.u64()?;
                if flags & !file_flags::ALL != 0 {
                    return Err(DecodeError::BadValue {
                        message: r.message,
                        field: "file flags",
                    });
                }
                Protocol::File { path, flags }
            }
            2 => Protocol::TcpListen {
                port: port(&mut r)?,
            },
            3 => Protocol::TcpConnect {
                host: r.text()?,
                port: port(&mut r)?,
            },
            4 => Protocol::TcpAccepted,
            t => return r.unknown(t),
        };
        r.done(v)
    }
}

impl Wire for FileRequest {
    fn encode_into(&self, out: &mut Vec<u8>) {
        let w = Writer(out);
        match self {
            FileRequest::Read { len } => w.tag(1).u64(*len),
            FileRequest::Write { data } => w.tag(2).bytes(data),
            FileRequest::Seek { offset, whence } => {
                let wh = match whence {
                    Whence::Start => 0,
                    Whence::Current => 1,
                    Whence::End => 2,
                };
                w.tag(3).i64(*offset).u64(wh)
            }
            FileRequest::Close => w.tag(4),
        };
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (mut r, tag) = Reader::new(bytes, "FileRequest")?;
        let v = match tag {
            1 => FileRequest::Read { len: r.u64()? },
            2 => FileRequest::Write {
                data: r.bytes(MAX_FRAME_LEN as u64)?,
            },
            3 => {
                let offset = r.i64()?;
                let whence = match r.u64()? {
                    0 => Whence::Start,
                    1 => Whence::Current,
                    2 => Whence::End,
                    _ => {
                        return Err(DecodeError::BadValue {
                            message: r.message,
                            field: "whence",
                        });
                    }
                };
                FileRequest::Seek { offset, whence }
            }
            4 => FileRequest::Close,
            t => return r.unknown(t),
        };
        r.done(v)
    }
}

impl Wire for FileReply {
    fn encode_into(&self, out: &mut Vec<u8>) {
        let w = Writer(out);
        match self {
            FileReply::Opened => w.tag(0),
            FileReply::Data { data } => w.tag(1).bytes(data),
            FileReply::Wrote { len } => w.tag(2).u64(*len),
            FileReply::Seeked { pos } => w.tag(3).u64(*pos),
            FileReply::Closed => w.tag(4),
            FileReply::Error { code } => w.tag(5).u64(*code),
        };
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (mut r, tag) = Reader::new(bytes, "FileReply")?;
        let v = match tag {
            0 => FileReply::Opened,
            1 => FileReply::Data {
                data: r.bytes(MAX_FRAME_LEN as u64)?,
            },
            2 => FileReply::Wrote { len: r.u64()? },
            3 => FileReply::Seeked { pos: r.u64()? },
            4 => FileReply::Closed,
            5 => FileReply::Error { code: r.u64()? },
            t => return r.unknown(t),
        };
        r.done(v)
    }
}

impl Wire for ListenerRequest {
    fn encode_into(&self, out: &mut Vec<u8>) {
        let ListenerRequest::Accept { pipe_id } = self;
        Writer(out).tag(1).u64(*pipe_id);
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (mut r, tag) = Reader::new(bytes, "ListenerRequest")?;
        let v = match tag {
            1 => ListenerRequest::Accept { pipe_id: r.u64()? },
            t => return r.unknown(t),
        };
        r.done(v)
    }
}

impl Wire for ListenerReply {
    fn encode_into(&self, out: &mut Vec<u8>) {
        let w = Writer(out);
        match self {
            ListenerReply::Listening { port } => w.tag(1).u64(*port),
            ListenerReply::Incoming { pipe_id, peer } => {
                w.tag(2).u64(*pipe_id).bytes(peer.as_bytes())
            }
            ListenerReply::Error { code } => w.tag(3).u64(*code),
        };
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (mut r, tag) = Reader::new(bytes, "ListenerReply")?;
        let v = match tag {
            1 => ListenerReply::Listening {
                port: port(&mut r)?,
            },
            2 => ListenerReply::Incoming {
                pipe_id: r.u64()?,
                peer: r.text()?,
            },
            3 => ListenerReply::Error { code: r.u64()? },
            t => return r.unknown(t),
        };
        r.done(v)
    }
}

impl Wire for StreamReply {
    fn encode_into(&self, out: &mut Vec<u8>) {
        let w = Writer(out);
        match self {
            StreamReply::Connected => w.tag(1),
            StreamReply::Error { code } => w.tag(2).u64(*code),
        };
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (mut r, tag) = Reader::new(bytes, "StreamReply")?;
        let v = match tag {
            1 => StreamReply::Connected,
            2 => StreamReply::Error { code: r.u64()? },
            t => return r.unknown(t),
        };
        r.done(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        "[a-z0-9/._-]{0,40}"
    }

    fn pipe_info() -> impl Strategy<Value = PipeInfo> {
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
        )
            .prop_map(
                |(pipe_id, shm_offset, ring_size, host_doorbell, guest_irq)| PipeInfo {
                    pipe_id,
                    shm_offset,
                    ring_size,
                    host_doorbell,
                    guest_irq,
                },
            )
    }

    fn round_trip<T: Wire + PartialEq + core::fmt::Debug>(v: T) -> Result<(), TestCaseError> {
        let bytes = v.encode();
        prop_assert_eq!(T::decode(&bytes), Ok(v));
        // Every strict prefix is rejected, never misread.
        for cut in 0..bytes.len() {
            prop_assert!(T::decode(&bytes[..cut]).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        let trailing = matches!(T::decode(&longer), Err(DecodeError::TrailingBytes { .. }));
        prop_assert!(trailing);
        Ok(())
    }

    proptest! {
        #[test]
        fn control_messages_round_trip(id in any::<u64>(), size in any::<u64>(), pipe in pipe_info(), code in any::<u64>()) {
            round_trip(ControlRequest::NewPipe { request_id: id, ring_size: size })?;
            round_trip(ControlRequest::ClosePipe { request_id: id, pipe_id: size })?;
            round_trip(ControlReply::PipeReady { request_id: id, pipe })?;
            round_trip(ControlReply::PipeClosed { request_id: id })?;
            round_trip(ControlReply::Error { request_id: id, code })?;
        }

        #[test]
        fn data_messages_round_trip(
            path in text(), flags in 0..=file_flags::ALL, port in 0u64..=65535, n in any::<u64>(),
            offset in any::<i64>(), data in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            round_trip(Protocol::Echo)?;
            round_trip(Protocol::File { path: path.clone(), flags })?;
            round_trip(Protocol::TcpListen { port })?;
            round_trip(Protocol::TcpConnect { host: path.clone(), port })?;
            round_trip(Protocol::TcpAccepted)?;
            for whence in [Whence::Start, Whence::Current, Whence::End] {
                round_trip(FileRequest::Seek { offset, whence })?;
            }
            round_trip(FileRequest::Read { len: n })?;
            round_trip(FileRequest::Write { data: data.clone() })?;
            round_trip(FileRequest::Close)?;
            round_trip(FileReply::Data { data })?;
            round_trip(FileReply::Wrote { len: n })?;
            round_trip(FileReply::Seeked { pos: n })?;
            round_trip(FileReply::Error { code: n })?;
            round_trip(ListenerRequest::Accept { pipe_id: n })?;
            round_trip(ListenerReply::Listening { port })?;
            round_trip(ListenerReply::Incoming { pipe_id: n, peer: path })?;
            round_trip(StreamReply::Error { code: n })?;
        }

        /// Arbitrary bytes decode to a message or a typed error, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = ControlRequest::decode(&bytes);
            let _ = ControlReply::decode(&bytes);
            let _ = Protocol::decode(&bytes);
            let _ = FileRequest::decode(&bytes);
            let _ = FileReply::decode(&bytes);
            let _ = ListenerRequest::decode(&bytes);
            let _ = ListenerReply::decode(&bytes);
            let _ = StreamReply::decode(&bytes);
        }
    }

    #[test]
    fn hostile_lengths_and_values_are_named() {
        let mut huge = vec![1u8];
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            Protocol::decode(&huge),
            Err(DecodeError::TooLong { .. })
        ));
        let bad_port = Protocol::TcpListen { port: 70_000 }.encode();
        assert_eq!(
            Protocol::decode(&bad_port),
            Err(DecodeError::BadValue {
                message: "Protocol",
                field: "port"
            })
        );
        assert_eq!(
            FileRequest::decode(&[9]),
            Err(DecodeError::UnknownTag {
                message: "FileRequest",
                tag: 9
            })
        );
        let mut bad_utf8 = vec![1u8];
        bad_utf8.extend_from_slice(&2u64.to_le_bytes());
        bad_utf8.extend_from_slice(&[0xff, 0xfe]);
        bad_utf8.extend_from_slice(&0u64.to_le_bytes());
        assert_eq!(
            Protocol::decode(&bad_utf8),
            Err(DecodeError::BadUtf8 {
                message: "Protocol"
            })
        );
        assert!(DecodeError::Empty.to_string().contains("empty"));
    }
}
