//! The `pipe-file` workload: the guest reads and writes files through the monitor's file relay.
//!
//! Each file gets its own pipe (opened `READ|WRITE|CREATE|TRUNCATE`), then a sequence of writes
//! (looping over short writes), absolute seeks and reads chosen at run time through [`Choices`],
//! and a close. Files run one after another or concurrently in their own kernel threads. Pipes
//! are closed on the control pipe only at the end, so a pipe's relay can finish long before the
//! guest lets its memory go.
//!
//! The workload only records what it saw ([`Observed`]): each file's request/reply log, where
//! the host placed each pipe and when the guest closed it, and every error. The oracles that
//! judge it live outside the guest. A bare-metal guest reports the logs and placements through
//! hypercalls in the byte encodings below, which the host decodes as untrusted input.
//!
//! Encodings, all integers little-endian:
//!
//! ```text
//! plan:        magic u32 = "FILE"  version u32 = 1  flags u8 (bit 0: concurrent)
//!              file count u64, then per file: ops u64
//! log:         magic u32 = "FLOG"  exchange count u64, then per exchange a tag u8:
//!              1 write: data length u64, data bytes, result (u64)
//!              2 read:  len u64, result (length u64, bytes)
//!              3 seek:  offset u64, result (u64)
//!              where a result is tag u8 (0 ok, 1 error) then the value, or an error code u64
//! placements:  magic u32 = "FPLC"  event count u64, then per event a tag u8:
//!              1 ready: pipe id u64, offset u64, ring size u64
//!              2 closed: pipe id u64
//! ```
//!
//! Decoding never panics, rejects trailing bytes, and checks every count against the bytes left
//! before allocating for it.

use crate::codec::{CodecError, Reader, put_bytes, put_len, put_u64};
use crate::echo::GuestOs;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;
use guest::PipeError;
use guest::sync::Latch;
use guest::{ControlClient, PipeEnd};
use hv::{Doorbell, IrqWaiter};
use ring_pipe::msg::{FileReply, FileRequest, PipeInfo, Protocol, Whence, Wire, file_flags};
use ring_pipe::{HEADER_LEN, SharedMemory};

pub use crate::echo::bytes_from;

/// Ring size of every file pipe.
pub const RING: u64 = 256;

/// The RECEIVED report index of the placement events (file logs use the file's index).
pub const PLACEMENTS_REPORT: u64 = u64::MAX;

/// The path of file `i`, relative to the directory the monitor serves.
pub fn path(i: usize) -> String {
    format!("data/file{i}.bin")
}

/// The choices a file session makes at run time: which operation, how much, where to seek.
/// In the simulation they are seeded decisions; on bare metal a seeded generator.
pub trait Choices: Clone + 'static {
    /// A value in `0..n` (0 when `n <= 1`).
    fn choose(&self, n: u64) -> u64;
}

/// The whole workload of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilePlan {
    /// Operations per file; one file per entry.
    pub ops: Vec<u64>,
    /// The files run in kernel threads of their own instead of one after another.
    pub concurrent: bool,
}

/// Derives a plan. `derive(name, lo, hi)` returns a value in `lo..=hi` (in the simulation, a
/// seeded decision recorded as option `name`); the names and their order are part of every
/// replay, so they must not change.
pub fn plan(derive: &mut dyn FnMut(&str, u64, u64) -> u64) -> FilePlan {
    let files = derive("files", 1, 3) as usize;
    let concurrent = derive("concurrent", 0, 1) == 1;
    let ops = (0..files)
        .map(|i| derive(&format!("f{i}_ops"), 1, 10))
        .collect();
    FilePlan { ops, concurrent }
}

/// One request and the reply observed for it (the reference model's `FileExchange`, in the
/// guest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exchange {
    /// Write `data`; the reply acknowledged `wrote` bytes (or an error code).
    Write {
        data: Vec<u8>,
        wrote: Result<u64, u64>,
    },
    /// Read up to `len`; the reply carried `data` (or an error code).
    Read {
        len: u64,
        data: Result<Vec<u8>, u64>,
    },
    /// Seek to an absolute position; the reply gave `pos` (or an error code).
    SeekStart { offset: u64, pos: Result<u64, u64> },
}

/// Where pipes were placed and when the guest let them go, as the guest saw it on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// PipeReady: pipe `id` occupies `2 * (HEADER_LEN + ring_size)` bytes from `offset`.
    Ready {
        id: u64,
        offset: u64,
        ring_size: u64,
    },
    /// The guest's ClosePipe for `id` was acknowledged.
    Closed { id: u64 },
}

/// What the workload saw.
#[derive(Debug, Default)]
pub struct Observed {
    /// Each file's log, by file index (only for files whose operations all completed).
    pub logs: BTreeMap<usize, Vec<Exchange>>,
    pub placements: Vec<Placement>,
    pub errors: Vec<String>,
}

/// Observations shared by the workload's kernel threads.
pub type Shared = Rc<RefCell<Observed>>;

/// The workload's main kernel thread. `control` is the control pipe, known to both sides at boot.
/// Errors go to `observed`.
pub async fn run<G: GuestOs, C: Choices>(
    os: G,
    choices: C,
    control: PipeInfo,
    plan: Rc<FilePlan>,
    observed: Shared,
) {
    if let Err(e) = guest_main(&os, &choices, &control, &plan, &observed).await {
        observed.borrow_mut().errors.push(format!("main: {e}"));
    }
}

async fn guest_main<G: GuestOs, C: Choices>(
    os: &G,
    choices: &C,
    control: &PipeInfo,
    plan: &FilePlan,
    observed: &Shared,
) -> Result<(), PipeError> {
    let mut control = ControlClient::new(os.attach(control).await?);
    let done = Latch::new(plan.ops.len() as u64);
    let mut ids = Vec::new();
    for (i, n) in plan.ops.iter().copied().enumerate() {
        let info = control.new_pipe(RING).await?;
        ids.push(info.pipe_id);
        observed.borrow_mut().placements.push(Placement::Ready {
            id: info.pipe_id,
            offset: info.shm_offset,
            ring_size: info.ring_size,
        });
        let pipe = os.attach(&info).await?;
        let (c, o, d) = (choices.clone(), observed.clone(), done.clone());
        let session = async move {
            if let Err(err) = file_session(&c, pipe, i, n, &o).await {
                o.borrow_mut().errors.push(format!("file {i}: {err}"));
            }
            d.count_down();
        };
        if plan.concurrent {
            os.kernel().spawn(&format!("file{i}"), session);
        } else {
            session.await;
        }
    }
    done.wait().await;
    for id in ids {
        control.close_pipe(id).await?;
        observed
            .borrow_mut()
            .placements
            .push(Placement::Closed { id });
    }
    control.shutdown().await
}

async fn exchange<M: SharedMemory + Clone, D: Doorbell, I: IrqWaiter>(
    pipe: &mut PipeEnd<M, D, I>,
    req: &FileRequest,
) -> Result<FileReply, PipeError> {
    pipe.send_frame(&req.encode()).await?;
    let frame = pipe.recv_frame().await?.ok_or(PipeError::UnexpectedEof)?;
    Ok(FileReply::decode(&frame)?)
}

/// One file: open, `ops` chosen operations, close. The log is recorded once every operation has
/// been answered.
async fn file_session<M: SharedMemory + Clone, D: Doorbell, I: IrqWaiter, C: Choices>(
    choices: &C,
    mut pipe: PipeEnd<M, D, I>,
    i: usize,
    ops: u64,
    observed: &Shared,
) -> Result<(), PipeError> {
    let flags = file_flags::READ | file_flags::WRITE | file_flags::CREATE | file_flags::TRUNCATE;
    pipe.send_frame(
        &Protocol::File {
            path: path(i),
            flags,
        }
        .encode(),
    )
    .await?;
    match FileReply::decode(&pipe.recv_frame().await?.ok_or(PipeError::UnexpectedEof)?)? {
        FileReply::Opened => {}
        FileReply::Error { code } => return Err(PipeError::Remote(code)),
        _ => {
            return Err(PipeError::Protocol(
                "open answered with something other than Opened",
            ));
        }
    }
    let mut log = Vec::new();
    let mut size_hint = 0u64;
    for _ in 0..ops {
        match choices.choose(3) {
            0 => {
                let key = choices.choose(u64::MAX);
                let mut data = bytes_from(key, 1 + choices.choose(300) as usize);
                while !data.is_empty() {
                    let wrote =
                        match exchange(&mut pipe, &FileRequest::Write { data: data.clone() })
                            .await?
                        {
                            FileReply::Wrote { len } => Ok(len),
                            FileReply::Error { code } => Err(code),
                            _ => {
                                return Err(PipeError::Protocol(
                                    "write answered with something other than Wrote",
                                ));
                            }
                        };
                    log.push(Exchange::Write {
                        data: data.clone(),
                        wrote,
                    });
                    match wrote {
                        Ok(n) if n >= 1 && n as usize <= data.len() => {
                            size_hint += n;
                            data.drain(..n as usize);
                        }
                        _ => break,
                    }
                }
            }
            1 => {
                let len = 1 + choices.choose(400);
                let data = match exchange(&mut pipe, &FileRequest::Read { len }).await? {
                    FileReply::Data { data } => Ok(data),
                    FileReply::Error { code } => Err(code),
                    _ => {
                        return Err(PipeError::Protocol(
                            "read answered with something other than Data",
                        ));
                    }
                };
                log.push(Exchange::Read { len, data });
            }
            _ => {
                let offset = choices.choose(size_hint + 20);
                let pos = match exchange(
                    &mut pipe,
                    &FileRequest::Seek {
                        offset: offset as i64,
                        whence: Whence::Start,
                    },
                )
                .await?
                {
                    FileReply::Seeked { pos } => Ok(pos),
                    FileReply::Error { code } => Err(code),
                    _ => {
                        return Err(PipeError::Protocol(
                            "seek answered with something other than Seeked",
                        ));
                    }
                };
                log.push(Exchange::SeekStart { offset, pos });
            }
        }
    }
    observed.borrow_mut().logs.insert(i, log);
    match exchange(&mut pipe, &FileRequest::Close).await? {
        FileReply::Closed => {}
        _ => {
            return Err(PipeError::Protocol(
                "close answered with something other than Closed",
            ));
        }
    }
    // The relay ends the stream after Closed.
    match pipe.recv_frame().await? {
        None => Ok(()),
        Some(_) => Err(PipeError::Protocol("frames after Closed")),
    }
}

/// The bytes a placed pipe spans (both rings with their headers), if that fits in a u64.
pub fn pipe_span(ring_size: u64) -> Option<u64> {
    HEADER_LEN.checked_add(ring_size)?.checked_mul(2)
}

// ---------------------------------------------------------------------------------------------
// Encodings (see the module docs for the layouts).

const PLAN_MAGIC: u32 = u32::from_le_bytes(*b"FILE");
const LOG_MAGIC: u32 = u32::from_le_bytes(*b"FLOG");
const PLACEMENTS_MAGIC: u32 = u32::from_le_bytes(*b"FPLC");
const VERSION: u32 = 1;
const CONCURRENT: u8 = 1;

/// Smallest encodings, to bound a count by the bytes left: an exchange (tag, one u64, a result
/// tag and one u64) and a placement event (tag and pipe id).
const MIN_EXCHANGE: usize = 1 + 8 + 1 + 8;
const MIN_PLACEMENT: usize = 1 + 8;

/// Why bytes are not a file plan, log or placement list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileWireError {
    /// The input ends inside a field.
    Truncated {
        at: usize,
        needed: usize,
    },
    /// The input does not start with the magic of what was expected.
    BadMagic {
        expected: &'static str,
        found: u32,
    },
    UnsupportedVersion(u32),
    /// Flag bits this version does not define.
    BadFlags(u8),
    /// A tag this encoding does not define.
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
    /// A placed pipe whose span does not fit in the address space.
    PlacementOutOfRange {
        id: u64,
        offset: u64,
        ring_size: u64,
    },
    /// Bytes after the last item.
    TrailingBytes(usize),
}

impl fmt::Display for FileWireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileWireError::Truncated { at, needed } => {
                write!(f, "input ends at byte {at}, inside a {needed}-byte field")
            }
            FileWireError::BadMagic { expected, found } => {
                write!(f, "bad magic {found:#010x}, not a {expected}")
            }
            FileWireError::UnsupportedVersion(v) => write!(f, "unsupported plan version {v}"),
            FileWireError::BadFlags(b) => write!(f, "undefined flag bits {b:#04x}"),
            FileWireError::BadTag { what, tag } => write!(f, "{what}: undefined tag {tag}"),
            FileWireError::LengthTooLarge {
                what,
                len,
                remaining,
            } => write!(
                f,
                "{what}: length {len} is too large for the {remaining} bytes left"
            ),
            FileWireError::ValueTooLarge { what, value } => {
                write!(f, "{what}: {value} does not fit this machine's usize")
            }
            FileWireError::PlacementOutOfRange {
                id,
                offset,
                ring_size,
            } => write!(
                f,
                "pipe {id} placed at {offset} with rings of {ring_size} bytes ends past the address space"
            ),
            FileWireError::TrailingBytes(n) => write!(f, "{n} bytes after the last item"),
        }
    }
}

impl core::error::Error for FileWireError {}

impl FilePlan {
    /// The plan as boot parameters.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_u32(&mut out, PLAN_MAGIC);
        put_u32(&mut out, VERSION);
        out.push(if self.concurrent { CONCURRENT } else { 0 });
        put_len(&mut out, self.ops.len());
        for ops in &self.ops {
            put_u64(&mut out, *ops);
        }
        out
    }

    /// Reads a plan from untrusted boot parameters.
    pub fn decode(bytes: &[u8]) -> Result<FilePlan, FileWireError> {
        let mut r = Reader::new(bytes);
        r.magic(PLAN_MAGIC, "file plan")?;
        let version = r.u32()?;
        if version != VERSION {
            return Err(FileWireError::UnsupportedVersion(version));
        }
        let flags = r.u8()?;
        if flags & !CONCURRENT != 0 {
            return Err(FileWireError::BadFlags(flags));
        }
        let count = r.count("file count", 8)?;
        let mut ops = Vec::with_capacity(count);
        for _ in 0..count {
            ops.push(r.u64()?);
        }
        finish(
            r,
            FilePlan {
                ops,
                concurrent: flags & CONCURRENT != 0,
            },
        )
    }
}

/// One file's log, as the metal guest reports it.
pub fn encode_log(log: &[Exchange]) -> Vec<u8> {
    let mut out = Vec::new();
    put_u32(&mut out, LOG_MAGIC);
    put_len(&mut out, log.len());
    for ex in log {
        match ex {
            Exchange::Write { data, wrote } => {
                out.push(1);
                put_bytes(&mut out, data);
                put_result(&mut out, *wrote);
            }
            Exchange::Read { len, data } => {
                out.push(2);
                put_u64(&mut out, *len);
                match data {
                    Ok(d) => {
                        out.push(0);
                        put_bytes(&mut out, d);
                    }
                    Err(code) => {
                        out.push(1);
                        put_u64(&mut out, *code);
                    }
                }
            }
            Exchange::SeekStart { offset, pos } => {
                out.push(3);
                put_u64(&mut out, *offset);
                put_result(&mut out, *pos);
            }
        }
    }
    out
}

/// Reads a file log reported by an untrusted guest.
pub fn decode_log(bytes: &[u8]) -> Result<Vec<Exchange>, FileWireError> {
    let mut r = Reader::new(bytes);
    r.magic(LOG_MAGIC, "file log")?;
    let count = r.count("exchange count", MIN_EXCHANGE)?;
    let mut log = Vec::with_capacity(count);
    for _ in 0..count {
        let ex = match r.u8()? {
            1 => {
                let data = r.bytes("write data")?;
                Exchange::Write {
                    data,
                    wrote: r.result("write result")?,
                }
            }
            2 => {
                let len = r.u64()?;
                let data = match r.u8()? {
                    0 => Ok(r.bytes("read data")?),
                    1 => Err(r.u64()?),
                    tag => {
                        return Err(FileWireError::BadTag {
                            what: "read result",
                            tag,
                        });
                    }
                };
                Exchange::Read { len, data }
            }
            3 => {
                let offset = r.u64()?;
                Exchange::SeekStart {
                    offset,
                    pos: r.result("seek result")?,
                }
            }
            tag => {
                return Err(FileWireError::BadTag {
                    what: "exchange",
                    tag,
                });
            }
        };
        log.push(ex);
    }
    finish(r, log)
}

/// The placement events, as the metal guest reports them.
pub fn encode_placements(events: &[Placement]) -> Vec<u8> {
    let mut out = Vec::new();
    put_u32(&mut out, PLACEMENTS_MAGIC);
    put_len(&mut out, events.len());
    for e in events {
        match *e {
            Placement::Ready {
                id,
                offset,
                ring_size,
            } => {
                out.push(1);
                put_u64(&mut out, id);
                put_u64(&mut out, offset);
                put_u64(&mut out, ring_size);
            }
            Placement::Closed { id } => {
                out.push(2);
                put_u64(&mut out, id);
            }
        }
    }
    out
}

/// Reads placement events reported by an untrusted guest. Every placed pipe's span fits in a
/// u64 (`offset + pipe_span(ring_size)`), so oracles can add them without overflow.
pub fn decode_placements(bytes: &[u8]) -> Result<Vec<Placement>, FileWireError> {
    let mut r = Reader::new(bytes);
    r.magic(PLACEMENTS_MAGIC, "placement list")?;
    let count = r.count("placement count", MIN_PLACEMENT)?;
    let mut events = Vec::with_capacity(count);
    for _ in 0..count {
        let e = match r.u8()? {
            1 => {
                let (id, offset, ring_size) = (r.u64()?, r.u64()?, r.u64()?);
                if pipe_span(ring_size)
                    .and_then(|span| offset.checked_add(span))
                    .is_none()
                {
                    return Err(FileWireError::PlacementOutOfRange {
                        id,
                        offset,
                        ring_size,
                    });
                }
                Placement::Ready {
                    id,
                    offset,
                    ring_size,
                }
            }
            2 => Placement::Closed { id: r.u64()? },
            tag => {
                return Err(FileWireError::BadTag {
                    what: "placement",
                    tag,
                });
            }
        };
        events.push(e);
    }
    finish(r, events)
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_result(out: &mut Vec<u8>, r: Result<u64, u64>) {
    let (tag, v) = match r {
        Ok(v) => (0, v),
        Err(code) => (1, code),
    };
    out.push(tag);
    put_u64(out, v);
}

/// `value`, if nothing follows it.
fn finish<T>(r: Reader<'_>, value: T) -> Result<T, FileWireError> {
    r.finish()?;
    Ok(value)
}

/// The file formats' own reads on top of the shared codec.
trait FileReads {
    fn magic(&mut self, magic: u32, expected: &'static str) -> Result<(), FileWireError>;
    fn result(&mut self, what: &'static str) -> Result<Result<u64, u64>, FileWireError>;
}

impl FileReads for Reader<'_> {
    fn magic(&mut self, magic: u32, expected: &'static str) -> Result<(), FileWireError> {
        let found = self.u32()?;
        if found == magic {
            Ok(())
        } else {
            Err(FileWireError::BadMagic { expected, found })
        }
    }

    fn result(&mut self, what: &'static str) -> Result<Result<u64, u64>, FileWireError> {
        match self.u8()? {
            0 => Ok(Ok(self.u64()?)),
            1 => Ok(Err(self.u64()?)),
            tag => Err(FileWireError::BadTag { what, tag }),
        }
    }
}

impl From<CodecError> for FileWireError {
    fn from(e: CodecError) -> Self {
        match e {
            CodecError::Truncated { at, needed } => FileWireError::Truncated { at, needed },
            CodecError::LengthTooLarge {
                what,
                len,
                remaining,
            } => FileWireError::LengthTooLarge {
                what,
                len,
                remaining,
            },
            CodecError::ValueTooLarge { what, value } => {
                FileWireError::ValueTooLarge { what, value }
            }
            CodecError::BadTag { what, tag } => FileWireError::BadTag { what, tag },
            CodecError::TrailingBytes(n) => FileWireError::TrailingBytes(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use proptest::collection::vec as pvec;
    use proptest::prelude::*;

    fn any_plan() -> impl Strategy<Value = FilePlan> {
        (pvec(any::<u64>(), 0..12), any::<bool>())
            .prop_map(|(ops, concurrent)| FilePlan { ops, concurrent })
    }

    fn any_result() -> impl Strategy<Value = Result<u64, u64>> {
        prop_oneof![any::<u64>().prop_map(Ok), any::<u64>().prop_map(Err)]
    }

    fn any_exchange() -> impl Strategy<Value = Exchange> {
        prop_oneof![
            (pvec(any::<u8>(), 0..40), any_result())
                .prop_map(|(data, wrote)| Exchange::Write { data, wrote }),
            (
                any::<u64>(),
                prop_oneof![
                    pvec(any::<u8>(), 0..40).prop_map(Ok),
                    any::<u64>().prop_map(Err)
                ]
            )
                .prop_map(|(len, data)| Exchange::Read { len, data }),
            (any::<u64>(), any_result())
                .prop_map(|(offset, pos)| Exchange::SeekStart { offset, pos }),
        ]
    }

    fn any_placement() -> impl Strategy<Value = Placement> {
        prop_oneof![
            (any::<u64>(), 0..u64::MAX / 4, 0..u64::MAX / 4).prop_map(|(id, offset, ring_size)| {
                Placement::Ready {
                    id,
                    offset,
                    ring_size,
                }
            }),
            any::<u64>().prop_map(|id| Placement::Closed { id }),
        ]
    }

    /// A plan as the simulation derives it, from a simple deterministic stand-in for its
    /// decisions.
    fn derived_plan(seed: u64) -> FilePlan {
        let mut x = seed | 1;
        plan(&mut |_name, lo, hi| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            lo + x % (hi - lo + 1)
        })
    }

    proptest! {
        #[test]
        fn plan_round_trip(p in any_plan()) {
            prop_assert_eq!(FilePlan::decode(&p.encode()), Ok(p));
        }

        #[test]
        fn every_plan_truncation_is_an_error(p in any_plan()) {
            let bytes = p.encode();
            for len in 0..bytes.len() {
                prop_assert!(FilePlan::decode(&bytes[..len]).is_err(), "prefix of {} bytes decoded", len);
            }
        }

        #[test]
        fn log_round_trip(log in pvec(any_exchange(), 0..12)) {
            prop_assert_eq!(decode_log(&encode_log(&log)), Ok(log));
        }

        #[test]
        fn every_log_truncation_is_an_error(log in pvec(any_exchange(), 0..8)) {
            let bytes = encode_log(&log);
            for len in 0..bytes.len() {
                prop_assert!(decode_log(&bytes[..len]).is_err(), "prefix of {} bytes decoded", len);
            }
        }

        #[test]
        fn placements_round_trip(events in pvec(any_placement(), 0..12)) {
            prop_assert_eq!(decode_placements(&encode_placements(&events)), Ok(events));
        }

        #[test]
        fn every_placements_truncation_is_an_error(events in pvec(any_placement(), 0..8)) {
            let bytes = encode_placements(&events);
            for len in 0..bytes.len() {
                prop_assert!(decode_placements(&bytes[..len]).is_err(), "prefix of {} bytes decoded", len);
            }
        }

        #[test]
        fn corrupted_input_never_panics(
            log in pvec(any_exchange(), 1..6),
            at in any::<usize>(),
            byte in any::<u8>(),
        ) {
            let mut bytes = encode_log(&log);
            let i = at % bytes.len();
            bytes[i] = byte;
            let _ = decode_log(&bytes);
            let _ = decode_placements(&bytes);
            let _ = FilePlan::decode(&bytes);
        }

        #[test]
        fn arbitrary_bytes_after_a_magic_never_panic(tail in pvec(any::<u8>(), 0..300)) {
            for magic in [b"FILE", b"FLOG", b"FPLC"] {
                let mut bytes = magic.to_vec();
                if magic == b"FILE" {
                    bytes.extend_from_slice(&1u32.to_le_bytes());
                }
                bytes.extend_from_slice(&tail);
                let _ = FilePlan::decode(&bytes);
                let _ = decode_log(&bytes);
                let _ = decode_placements(&bytes);
            }
        }
    }

    #[test]
    fn derived_plans_stay_in_range_and_round_trip() {
        for seed in 0..200 {
            let p = derived_plan(seed);
            assert!((1..=3).contains(&p.ops.len()), "seed {seed}");
            assert!(p.ops.iter().all(|n| (1..=10).contains(n)), "seed {seed}");
            assert_eq!(FilePlan::decode(&p.encode()), Ok(p), "seed {seed}");
        }
    }

    #[test]
    fn derivation_draws_in_the_documented_order() {
        let mut names = Vec::new();
        let p = plan(&mut |name, lo, _| {
            names.push(name.to_string());
            lo + 2
        });
        assert_eq!(names, ["files", "concurrent", "f0_ops", "f1_ops", "f2_ops"]);
        assert_eq!(p.ops, [3, 3, 3]);
        assert!(!p.concurrent);
    }

    #[test]
    fn typed_errors() {
        assert_eq!(
            FilePlan::decode(&[]),
            Err(FileWireError::Truncated { at: 0, needed: 4 })
        );
        assert_eq!(
            FilePlan::decode(b"ECHP\x01\0\0\0\0"),
            Err(FileWireError::BadMagic {
                expected: "file plan",
                found: u32::from_le_bytes(*b"ECHP")
            })
        );
        let mut v2 = FilePlan::default().encode();
        v2[4] = 2;
        assert_eq!(
            FilePlan::decode(&v2),
            Err(FileWireError::UnsupportedVersion(2))
        );
        let mut flags = FilePlan::default().encode();
        flags[8] = 0x82;
        assert_eq!(FilePlan::decode(&flags), Err(FileWireError::BadFlags(0x82)));

        // A huge count is refused before anything is allocated for it.
        let mut huge = b"FLOG".to_vec();
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(
            decode_log(&huge),
            Err(FileWireError::LengthTooLarge {
                what: "exchange count",
                len: u64::MAX,
                remaining: 0
            })
        );

        let mut trailing = encode_placements(&[]);
        trailing.push(0);
        assert_eq!(
            decode_placements(&trailing),
            Err(FileWireError::TrailingBytes(1))
        );

        let mut bad_tag = encode_log(&[Exchange::SeekStart {
            offset: 1,
            pos: Ok(1),
        }]);
        bad_tag[12] = 9;
        assert_eq!(
            decode_log(&bad_tag),
            Err(FileWireError::BadTag {
                what: "exchange",
                tag: 9
            })
        );

        let mut bad_result = encode_log(&[Exchange::SeekStart {
            offset: 1,
            pos: Ok(1),
        }]);
        bad_result[21] = 7;
        assert_eq!(
            decode_log(&bad_result),
            Err(FileWireError::BadTag {
                what: "seek result",
                tag: 7
            })
        );

        // A log is not a placement list.
        assert!(matches!(
            decode_placements(&encode_log(&[])),
            Err(FileWireError::BadMagic {
                expected: "placement list",
                ..
            })
        ));

        let far = encode_placements(&[Placement::Ready {
            id: 3,
            offset: u64::MAX - 100,
            ring_size: 256,
        }]);
        assert_eq!(
            decode_placements(&far),
            Err(FileWireError::PlacementOutOfRange {
                id: 3,
                offset: u64::MAX - 100,
                ring_size: 256
            })
        );

        // Every error says what went wrong.
        assert!(
            FileWireError::Truncated { at: 3, needed: 8 }
                .to_string()
                .contains("byte 3")
        );
        assert!(
            FileWireError::BadMagic {
                expected: "file log",
                found: 0
            }
            .to_string()
            .contains("file log")
        );
    }

    #[test]
    fn spans_match_the_ring_layout() {
        assert_eq!(pipe_span(256), Some(2 * (HEADER_LEN + 256)));
        assert_eq!(pipe_span(u64::MAX), None);
        assert_eq!(path(2), "data/file2.bin");
    }
}
