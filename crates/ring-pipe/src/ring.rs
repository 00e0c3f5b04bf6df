//! A single-producer single-consumer byte ring in shared memory.
//!
//! Layout (all fields u64, little-endian, 8-aligned), followed by `capacity` data bytes:
//!
//! | offset | field          | written by |
//! |-------:|----------------|------------|
//! | 0      | read cursor    | consumer   |
//! | 8      | write cursor   | producer   |
//! | 16     | writer closed  | producer   |
//! | 24     | reader closed  | consumer   |
//! | 32     | reader waiting | consumer   |
//! | 40     | writer waiting | producer   |
//! | 48..64 | reserved       |            |
//!
//! Cursors are monotonic u64 counts of bytes ever written/read; they wrap at 2^64, so the
//! capacity is a power of two and the data index is `cursor & (capacity - 1)`, which stays
//! continuous across the wrap. `readable_len = write - read`, `writable_len = capacity - that`.
//!
//! Each side keeps its own cursor locally and never re-reads it from shared memory (a hostile
//! peer could change it between the check and the copy). It loads the peer's cursor once per
//! operation and clamps the distance to `capacity`, so no value the peer writes can move a copy
//! outside the ring. Data is copied before the cursor is published with a release store, and the
//! close flag is read *before* the cursor, so a reader that sees "closed" also sees every byte
//! written before the close.
//!
//! Notification suppression: a side about to sleep sets its "waiting" flag, issues a SeqCst
//! fence and re-checks; the other side, after publishing, issues a SeqCst fence and reads the
//! flag to decide whether to ring the doorbell. Both fences must be SeqCst (a Dekker handshake:
//! with weaker fences each side can miss the other's store).

use crate::mem::{MemFault, SharedMemory};
use core::sync::atomic::Ordering;

pub const HEADER_LEN: u64 = 64;
const READ_CURSOR: u64 = 0;
const WRITE_CURSOR: u64 = 8;
const WRITER_CLOSED: u64 = 16;
const READER_CLOSED: u64 = 24;
const READER_WAITING: u64 = 32;
const WRITER_WAITING: u64 = 40;

/// Planted bugs at the ring layer (effective only with feature `planted-bugs`).
pub mod planted {
    /// The reader checks the cursor before the close flag, so it can report end-of-file while
    /// bytes written before the close are still in the ring.
    pub const EOF_BEFORE_DRAIN: u32 = 1 << 0;
    /// The write cursor is published with a relaxed store: a reader can see it before the data.
    pub const PUBLISH_BEFORE_DATA: u32 = 1 << 1;
    /// Notification suppression uses AcqRel fences where the handshake needs SeqCst.
    pub const WEAK_SUPPRESSION_FENCE: u32 = 1 << 2;
    /// The split copy at the end of the data area is off by one byte.
    pub const WRAP_OFF_BY_ONE: u32 = 1 << 3;
    /// The peer's cursor is trusted: no clamp, so a lying peer moves copies out of the ring.
    pub const TRUST_PEER_CURSOR: u32 = 1 << 4;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// Nothing can be transferred now; wait for the peer.
    WouldBlock,
    /// This side already closed.
    Closed,
    /// The reader has gone: nothing written now will ever be read.
    PeerClosed,
    /// The layout is unusable (capacity not a power of two, misaligned, outside the region).
    Layout(&'static str),
    Mem(MemFault),
}

impl From<MemFault> for RingError {
    fn from(f: MemFault) -> Self {
        RingError::Mem(f)
    }
}

impl core::fmt::Display for RingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RingError::WouldBlock => f.write_str("ring would block"),
            RingError::Closed => f.write_str("ring side already closed"),
            RingError::PeerClosed => f.write_str("ring reader closed"),
            RingError::Layout(why) => write!(f, "bad ring layout: {why}"),
            RingError::Mem(m) => write!(f, "{m}"),
        }
    }
}

impl core::error::Error for RingError {}

impl embedded_io::Error for RingError {
    fn kind(&self) -> embedded_io::ErrorKind {
        match self {
            RingError::WouldBlock => embedded_io::ErrorKind::Other,
            RingError::Closed | RingError::PeerClosed => embedded_io::ErrorKind::BrokenPipe,
            RingError::Layout(_) => embedded_io::ErrorKind::InvalidInput,
            RingError::Mem(_) => embedded_io::ErrorKind::InvalidData,
        }
    }
}

/// Where a ring lives in the shared region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingLayout {
    base: u64,
    capacity: u64,
}

impl RingLayout {
    pub fn new(base: u64, capacity: u64, region_size: u64) -> Result<Self, RingError> {
        if !capacity.is_power_of_two() || capacity < 8 {
            return Err(RingError::Layout(
                "capacity must be a power of two of at least 8",
            ));
        }
        if !base.is_multiple_of(8) {
            return Err(RingError::Layout("ring base must be 8-byte aligned"));
        }
        match base
            .checked_add(HEADER_LEN)
            .and_then(|h| h.checked_add(capacity))
        {
            Some(end) if end <= region_size => Ok(Self { base, capacity }),
            _ => Err(RingError::Layout("ring does not fit in the shared region")),
        }
    }

    pub fn base(&self) -> u64 {
        self.base
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Header plus data.
    pub fn total_len(&self) -> u64 {
        HEADER_LEN + self.capacity
    }

    fn field(&self, off: u64) -> u64 {
        self.base + off
    }

    fn data(&self) -> u64 {
        self.base + HEADER_LEN
    }

    /// Names the header fields and the data area for traces, under `ring` (e.g. `pipe3.g2h`):
    /// `ring.read`, `ring.write`, `ring.writer_closed`, `ring.reader_closed`,
    /// `ring.reader_waiting`, `ring.writer_waiting`, and `ring.data` (copies show as
    /// `ring.data+<index>`, relative to the data area).
    pub fn name_fields<M: SharedMemory>(&self, mem: &M, ring: &dyn core::fmt::Display) {
        for (off, field) in [
            (READ_CURSOR, "read"),
            (WRITE_CURSOR, "write"),
            (WRITER_CLOSED, "writer_closed"),
            (READER_CLOSED, "reader_closed"),
            (READER_WAITING, "reader_waiting"),
            (WRITER_WAITING, "writer_waiting"),
        ] {
            mem.name_range(self.field(off), 8, format_args!("{ring}.{field}"));
        }
        mem.name_range(self.data(), self.capacity, format_args!("{ring}.data"));
    }

    /// Writes a fresh header with both cursors at `start` (set-up, before either side attaches).
    pub async fn init<M: SharedMemory>(&self, mem: &M, start: u64) -> Result<(), MemFault> {
        for f in [WRITER_CLOSED, READER_CLOSED, READER_WAITING, WRITER_WAITING] {
            mem.store_u64(self.field(f), 0, Ordering::Relaxed).await?;
        }
        mem.store_u64(self.field(READ_CURSOR), start, Ordering::Relaxed)
            .await?;
        mem.store_u64(self.field(WRITE_CURSOR), start, Ordering::Release)
            .await
    }
}

fn has(bugs: u32, bug: u32) -> bool {
    cfg!(feature = "planted-bugs") && bugs & bug != 0
}

fn suppression_fence(bugs: u32) -> Ordering {
    if has(bugs, planted::WEAK_SUPPRESSION_FENCE) {
        Ordering::AcqRel
    } else {
        Ordering::SeqCst
    }
}

/// Distance between cursors as seen by one side, clamped to the capacity unless the bug that
/// trusts the peer is planted.
fn distance(ahead: u64, behind: u64, capacity: u64, bugs: u32, violations: &mut u64) -> u64 {
    let d = ahead.wrapping_sub(behind);
    if d > capacity {
        *violations += 1;
        if !has(bugs, planted::TRUST_PEER_CURSOR) {
            return capacity;
        }
    }
    d
}

/// Splits a copy of `n` bytes starting at `cursor` into the part up to the end of the data area
/// and the part that wraps to its start.
fn split(cursor: u64, n: u64, capacity: u64, bugs: u32) -> (u64, u64, u64) {
    let index = cursor & (capacity - 1);
    let room = if has(bugs, planted::WRAP_OFF_BY_ONE) {
        (capacity - index).saturating_sub(1).max(1)
    } else {
        capacity - index
    };
    let first = n.min(room);
    (index, first, n - first)
}

/// What both sides of a ring hold: the shared memory, the layout, the side's own cursor (kept
/// here, never re-read from shared memory), whether it closed, its planted bugs, and how often the
/// peer's cursor was out of range (a misbehaving or hostile peer).
struct Side<M> {
    mem: M,
    layout: RingLayout,
    cursor: u64,
    closed: bool,
    bugs: u32,
    violations: u64,
}

impl<M: SharedMemory> Side<M> {
    /// Attaches to an initialised ring, reading this side's own cursor (at `own`) once.
    async fn attach(mem: M, layout: RingLayout, own: u64) -> Result<Self, RingError> {
        let cursor = mem.load_u64(layout.field(own), Ordering::Acquire).await?;
        Ok(Self {
            mem,
            layout,
            cursor,
            closed: false,
            bugs: 0,
            violations: 0,
        })
    }

    /// Sets this side's close flag (at `flag`) once.
    async fn close(&mut self, flag: u64) -> Result<(), RingError> {
        if !self.closed {
            self.closed = true;
            self.mem
                .store_u64(self.layout.field(flag), 1, Ordering::Release)
                .await?;
        }
        Ok(())
    }
}

/// Accessors every side offers.
macro_rules! side_accessors {
    () => {
        /// Switches on planted bugs (see [`planted`]); without feature `planted-bugs` it does nothing.
        pub fn with_planted(mut self, bugs: u32) -> Self {
            self.0.bugs = bugs;
            self
        }

        pub fn layout(&self) -> RingLayout {
            self.0.layout
        }

        /// How often the peer's cursor was out of range (a misbehaving or hostile peer).
        pub fn peer_violations(&self) -> u64 {
            self.0.violations
        }

        pub fn is_closed(&self) -> bool {
            self.0.closed
        }
    };
}

/// The writing side of a ring.
pub struct Producer<M>(Side<M>);

impl<M: SharedMemory> Producer<M> {
    /// Attaches to an initialised ring, reading its own cursor once.
    pub async fn attach(mem: M, layout: RingLayout) -> Result<Self, RingError> {
        Ok(Self(Side::attach(mem, layout, WRITE_CURSOR).await?))
    }

    side_accessors!();

    /// Bytes that can be written now.
    pub async fn writable_len(&mut self) -> Result<u64, RingError> {
        let read = self
            .0
            .mem
            .load_u64(self.0.layout.field(READ_CURSOR), Ordering::Acquire)
            .await?;
        let used = distance(
            self.0.cursor,
            read,
            self.0.layout.capacity,
            self.0.bugs,
            &mut self.0.violations,
        );
        Ok(self.0.layout.capacity.saturating_sub(used))
    }

    /// Writes as much of `data` as fits without blocking.
    pub async fn try_write(&mut self, data: &[u8]) -> Result<usize, RingError> {
        if self.0.closed {
            return Err(RingError::Closed);
        }
        if data.is_empty() {
            return Ok(0);
        }
        if self
            .0
            .mem
            .load_u64(self.0.layout.field(READER_CLOSED), Ordering::Acquire)
            .await?
            != 0
        {
            return Err(RingError::PeerClosed);
        }
        let free = self.writable_len().await?;
        let n = free.min(data.len() as u64);
        if n == 0 {
            return Err(RingError::WouldBlock);
        }
        let (index, first, second) = split(self.0.cursor, n, self.0.layout.capacity, self.0.bugs);
        let data_base = self.0.layout.data();
        self.0
            .mem
            .write(data_base + index, &data[..first as usize])
            .await?;
        if second > 0 {
            self.0
                .mem
                .write(data_base, &data[first as usize..n as usize])
                .await?;
        }
        self.0.cursor = self.0.cursor.wrapping_add(n);
        let publish = if has(self.0.bugs, planted::PUBLISH_BEFORE_DATA) {
            Ordering::Relaxed
        } else {
            Ordering::Release
        };
        self.0
            .mem
            .store_u64(self.0.layout.field(WRITE_CURSOR), self.0.cursor, publish)
            .await?;
        Ok(n as usize)
    }

    /// Marks the end of the stream. Bytes already written stay readable.
    pub async fn close(&mut self) -> Result<(), RingError> {
        self.0.close(WRITER_CLOSED).await
    }

    /// After publishing: does the reader want a doorbell? (The publishing half of the handshake.)
    pub async fn reader_wants_wake(&self) -> Result<bool, RingError> {
        self.0.mem.fence(suppression_fence(self.0.bugs)).await;
        Ok(self
            .0
            .mem
            .load_u64(self.0.layout.field(READER_WAITING), Ordering::Relaxed)
            .await?
            != 0)
    }

    /// Before sleeping for space: announces it, then re-checks. Returns true if the writer should
    /// really sleep (still full and the reader still there).
    pub async fn prepare_wait(&mut self) -> Result<bool, RingError> {
        self.0
            .mem
            .store_u64(self.0.layout.field(WRITER_WAITING), 1, Ordering::Relaxed)
            .await?;
        self.0.mem.fence(suppression_fence(self.0.bugs)).await;
        let reader_gone = self
            .0
            .mem
            .load_u64(self.0.layout.field(READER_CLOSED), Ordering::Acquire)
            .await?
            != 0;
        Ok(!reader_gone && self.writable_len().await? == 0)
    }

    /// After waking (or deciding not to sleep).
    pub async fn end_wait(&self) -> Result<(), RingError> {
        Ok(self
            .0
            .mem
            .store_u64(self.0.layout.field(WRITER_WAITING), 0, Ordering::Relaxed)
            .await?)
    }
}

/// The reading side of a ring.
pub struct Consumer<M>(Side<M>);

impl<M: SharedMemory> Consumer<M> {
    /// Attaches to an initialised ring, reading its own cursor once.
    pub async fn attach(mem: M, layout: RingLayout) -> Result<Self, RingError> {
        Ok(Self(Side::attach(mem, layout, READ_CURSOR).await?))
    }

    side_accessors!();

    /// Bytes that can be read now, and whether the writer has closed. The close flag is loaded
    /// first: if it is set, the cursor loaded after it covers every byte written before close.
    pub async fn readable(&mut self) -> Result<(u64, bool), RingError> {
        let eof_first = !has(self.0.bugs, planted::EOF_BEFORE_DRAIN);
        let mut closed = false;
        if eof_first {
            closed = self
                .0
                .mem
                .load_u64(self.0.layout.field(WRITER_CLOSED), Ordering::Acquire)
                .await?
                != 0;
        }
        let write = self
            .0
            .mem
            .load_u64(self.0.layout.field(WRITE_CURSOR), Ordering::Acquire)
            .await?;
        let avail = distance(
            write,
            self.0.cursor,
            self.0.layout.capacity,
            self.0.bugs,
            &mut self.0.violations,
        );
        if !eof_first {
            closed = self
                .0
                .mem
                .load_u64(self.0.layout.field(WRITER_CLOSED), Ordering::Acquire)
                .await?
                != 0;
        }
        Ok((avail, closed))
    }

    /// Reads what is available without blocking. `Ok(0)` means end of stream (writer closed and
    /// everything read); `Err(WouldBlock)` means nothing yet.
    pub async fn try_read(&mut self, buf: &mut [u8]) -> Result<usize, RingError> {
        if self.0.closed {
            return Err(RingError::Closed);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let (avail, writer_closed) = self.readable().await?;
        if avail == 0 {
            return if writer_closed {
                Ok(0)
            } else {
                Err(RingError::WouldBlock)
            };
        }
        let n = avail.min(buf.len() as u64);
        let (index, first, second) = split(self.0.cursor, n, self.0.layout.capacity, self.0.bugs);
        let data_base = self.0.layout.data();
        self.0
            .mem
            .read(data_base + index, &mut buf[..first as usize])
            .await?;
        if second > 0 {
            self.0
                .mem
                .read(data_base, &mut buf[first as usize..n as usize])
                .await?;
        }
        self.0.cursor = self.0.cursor.wrapping_add(n);
        self.0
            .mem
            .store_u64(
                self.0.layout.field(READ_CURSOR),
                self.0.cursor,
                Ordering::Release,
            )
            .await?;
        Ok(n as usize)
    }

    /// Stops reading: the writer will see `PeerClosed`.
    pub async fn close(&mut self) -> Result<(), RingError> {
        self.0.close(READER_CLOSED).await
    }

    /// After consuming: does the writer want a doorbell? (The publishing half of the handshake.)
    pub async fn writer_wants_wake(&self) -> Result<bool, RingError> {
        self.0.mem.fence(suppression_fence(self.0.bugs)).await;
        Ok(self
            .0
            .mem
            .load_u64(self.0.layout.field(WRITER_WAITING), Ordering::Relaxed)
            .await?
            != 0)
    }

    /// Before sleeping for data: announces it, then re-checks. Returns true if the reader should
    /// really sleep (still empty and not closed).
    pub async fn prepare_wait(&mut self) -> Result<bool, RingError> {
        self.0
            .mem
            .store_u64(self.0.layout.field(READER_WAITING), 1, Ordering::Relaxed)
            .await?;
        self.0.mem.fence(suppression_fence(self.0.bugs)).await;
        let (avail, closed) = self.readable().await?;
        Ok(avail == 0 && !closed)
    }

    pub async fn end_wait(&self) -> Result<(), RingError> {
        Ok(self
            .0
            .mem
            .store_u64(self.0.layout.field(READER_WAITING), 0, Ordering::Relaxed)
            .await?)
    }
}
