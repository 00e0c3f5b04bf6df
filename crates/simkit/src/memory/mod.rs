//! The shared-memory model: one byte-addressed memory reached only through this shim.
//!
//! Model. Three modes, chosen per run:
//! - `sc`: every access goes straight to memory; only the interleaving varies.
//! - `tso` (default): x86-TSO. Each actor has a FIFO store buffer; its loads forward from its own
//!   buffer; buffered stores reach memory one at a time when the scheduler picks a *drain* (a
//!   schedulable item beside the actors), so drains happen in seeded order. Locked RMWs, SeqCst
//!   stores (`xchg`) and SeqCst fences (`mfence`) flush the actor's buffer. An entry older than
//!   `max_buffer_age` scheduler steps is drained by force, as hardware drains in bounded time.
//! - `relaxed`: an Arm-like C11 model (see `relaxed.rs`): each byte keeps a short history of
//!   stores; an atomic load may read any store not older than what the reader already knows
//!   (happens-before plus read/write coherence), chosen by the decision source; release/acquire
//!   and SeqCst carry views. Plain (non-atomic) reads see the oldest value they are allowed to,
//!   which exposes unsynchronised data deterministically.
//!
//! Faults injected: store-buffer delay and drain order (tso), stale reads (relaxed). Every access
//! is bounds-checked and reports `MemError::OutOfBounds` rather than panicking.

mod relaxed;
mod tso;

use crate::decision::DecisionSource;
pub use std::sync::atomic::Ordering;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MemMode {
    Sc,
    Tso,
    Relaxed,
}

impl MemMode {
    pub const ALL: [MemMode; 3] = [MemMode::Sc, MemMode::Tso, MemMode::Relaxed];

    pub fn name(self) -> &'static str {
        match self {
            MemMode::Sc => "sc",
            MemMode::Tso => "tso",
            MemMode::Relaxed => "relaxed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == s)
    }
}

impl std::fmt::Display for MemMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How an access is made: as an atomic with an ordering, or as a plain (non-atomic) copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Atomic(Ordering),
    Plain,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemError {
    OutOfBounds { addr: u64, len: u64, size: u64 },
    BadWidth { width: usize },
}

impl std::fmt::Display for MemError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MemError::OutOfBounds { addr, len, size } => {
                write!(
                    f,
                    "access of {len} bytes at {addr:#x} is outside memory of {size} bytes"
                )
            }
            MemError::BadWidth { width } => write!(f, "atomic width {width} is not 1, 2, 4 or 8"),
        }
    }
}

impl std::error::Error for MemError {}

/// What a load saw, beyond its value, for the trace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadNote {
    /// tso: at least one byte came from the reader's own store buffer.
    pub forwarded: bool,
    /// relaxed: how many newer stores to this location the load did not see.
    pub stale_by: u8,
}

/// A happens-before edge carried by a kernel-mediated signal (a doorbell, an interrupt, an
/// `eventfd` write and read): made by the signaller, consumed by whoever the signal wakes.
#[derive(Clone, Debug, Default)]
pub struct SyncToken(Option<std::rc::Rc<Vec<u32>>>);

impl SyncToken {
    /// Merges another signal's edge into this one (coalesced signals).
    pub fn merge(&mut self, other: &SyncToken) {
        match (&mut self.0, &other.0) {
            (_, None) => {}
            (None, Some(o)) => self.0 = Some(o.clone()),
            (Some(mine), Some(o)) => {
                let mut merged: Vec<u32> = mine.as_ref().clone();
                relaxed::join_clock(&mut merged, o);
                *mine = std::rc::Rc::new(merged);
            }
        }
    }
}

/// One buffered store that reached memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Drained {
    pub addr: u64,
    pub len: usize,
}

pub struct Memory {
    mode: MemMode,
    /// The committed memory: what an outside observer (an oracle) sees. In `relaxed` mode it holds
    /// the newest store to each byte in modification order.
    bytes: Vec<u8>,
    tso: tso::StoreBuffers,
    relaxed: relaxed::Views,
    max_buffer_age: u64,
    /// Writes to committed memory so far.
    commits: u64,
}

pub(crate) fn short_order(o: Ordering) -> &'static str {
    match o {
        Ordering::Relaxed => "rlx",
        Ordering::Acquire => "acq",
        Ordering::Release => "rel",
        Ordering::AcqRel => "acqrel",
        _ => "sc",
    }
}

/// An ordering as the trace hash encodes it.
pub(crate) fn order_code(o: Ordering) -> u8 {
    match o {
        Ordering::Relaxed => 0,
        Ordering::Acquire => 1,
        Ordering::Release => 2,
        Ordering::AcqRel => 3,
        _ => 4,
    }
}

fn check_width(width: usize) -> Result<(), MemError> {
    match width {
        1 | 2 | 4 | 8 => Ok(()),
        _ => Err(MemError::BadWidth { width }),
    }
}

pub(crate) fn le_value(bytes: &[u8]) -> u64 {
    let mut raw = [0u8; 8];
    raw[..bytes.len()].copy_from_slice(bytes);
    u64::from_le_bytes(raw)
}

fn is_release(o: Ordering) -> bool {
    matches!(o, Ordering::Release | Ordering::AcqRel | Ordering::SeqCst)
}

fn is_acquire(o: Ordering) -> bool {
    matches!(o, Ordering::Acquire | Ordering::AcqRel | Ordering::SeqCst)
}

impl Memory {
    pub fn new(mode: MemMode, size: usize) -> Self {
        Self {
            mode,
            bytes: vec![0; size],
            tso: tso::StoreBuffers::default(),
            relaxed: relaxed::Views::default(),
            max_buffer_age: 256,
            commits: 0,
        }
    }

    /// Empties memory for a new run in `mode`, keeping its allocations (bytes, store buffers,
    /// history pages, actor views) for reuse. The result behaves as `Memory::new(mode, 0)`.
    pub fn reset(&mut self, mode: MemMode) {
        self.mode = mode;
        self.bytes.clear();
        self.tso.reset();
        self.relaxed.reset();
        self.max_buffer_age = 256;
        self.commits = 0;
    }

    /// How many times committed memory has been written (a change counter for watchers).
    pub fn commits(&self) -> u64 {
        self.commits
    }

    pub fn mode(&self) -> MemMode {
        self.mode
    }

    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Scheduler steps after which a buffered store is drained by force (tso).
    pub fn set_max_buffer_age(&mut self, steps: u64) {
        self.max_buffer_age = steps.max(1);
    }

    /// Grows memory by `len` zero bytes and returns the base address of the new range.
    pub fn grow(&mut self, len: usize) -> u64 {
        let base = self.bytes.len() as u64;
        self.bytes.resize(self.bytes.len() + len, 0);
        base
    }

    fn check(&self, addr: u64, len: usize) -> Result<(), MemError> {
        let size = self.size();
        match addr.checked_add(len as u64) {
            Some(end) if end <= size => Ok(()),
            _ => Err(MemError::OutOfBounds {
                addr,
                len: len as u64,
                size,
            }),
        }
    }

    /// The committed bytes, as an outside observer sees them (store buffers excluded).
    pub fn committed(&self, addr: u64, len: usize) -> Result<&[u8], MemError> {
        self.check(addr, len)?;
        Ok(&self.bytes[addr as usize..addr as usize + len])
    }

    /// Writes committed memory directly, outside any actor: set-up before a run, or a hostile
    /// device. In `relaxed` mode it becomes the initial value every actor may read.
    pub fn poke(&mut self, addr: u64, data: &[u8]) -> Result<(), MemError> {
        self.check(addr, data.len())?;
        self.bytes[addr as usize..addr as usize + data.len()].copy_from_slice(data);
        self.commits += 1;
        if self.mode == MemMode::Relaxed {
            self.relaxed.poke(addr, data);
        }
        Ok(())
    }

    /// A load of `buf.len()` bytes by `actor`.
    pub fn load(
        &mut self,
        actor: usize,
        addr: u64,
        buf: &mut [u8],
        access: Access,
        ds: &mut DecisionSource,
    ) -> Result<LoadNote, MemError> {
        self.check(addr, buf.len())?;
        if let Access::Atomic(_) = access {
            check_width(buf.len())?;
        }
        let range = addr as usize..addr as usize + buf.len();
        Ok(match self.mode {
            MemMode::Sc => {
                buf.copy_from_slice(&self.bytes[range]);
                LoadNote::default()
            }
            MemMode::Tso => {
                buf.copy_from_slice(&self.bytes[range]);
                LoadNote {
                    forwarded: self.tso.forward(actor, addr, buf),
                    stale_by: 0,
                }
            }
            MemMode::Relaxed => self.relaxed.load(actor, addr, buf, access, &self.bytes, ds),
        })
    }

    /// A store of `data` by `actor`.
    pub fn store(
        &mut self,
        actor: usize,
        addr: u64,
        data: &[u8],
        access: Access,
        step: u64,
    ) -> Result<(), MemError> {
        self.check(addr, data.len())?;
        if let Access::Atomic(_) = access {
            check_width(data.len())?;
        }
        match self.mode {
            MemMode::Sc => self.commit(addr, data),
            MemMode::Tso => {
                self.tso.push(actor, addr, data, step);
                // An x86 SeqCst store is `xchg`: a locked instruction that drains the buffer.
                if access == Access::Atomic(Ordering::SeqCst) {
                    self.flush(actor);
                }
            }
            MemMode::Relaxed => {
                self.relaxed.store(actor, addr, data, access, &self.bytes);
                self.commit(addr, data);
            }
        }
        Ok(())
    }

    /// An atomic read-modify-write of `width` bytes. `update` maps the old value to the new one,
    /// or to `None` for a compare-exchange that fails (then `failure` is the load's ordering).
    /// Returns the old value.
    #[allow(clippy::too_many_arguments)]
    pub fn rmw(
        &mut self,
        actor: usize,
        addr: u64,
        width: usize,
        success: Ordering,
        failure: Ordering,
        update: &mut dyn FnMut(u64) -> Option<u64>,
    ) -> Result<u64, MemError> {
        self.check(addr, width)?;
        check_width(width)?;
        let range = addr as usize..addr as usize + width;
        match self.mode {
            MemMode::Sc | MemMode::Tso => {
                // x86 locked instructions drain the store buffer and act on memory directly.
                self.flush(actor);
                let old = le_value(&self.bytes[range]);
                if let Some(new) = update(old) {
                    self.commit(addr, &new.to_le_bytes()[..width]);
                }
                Ok(old)
            }
            MemMode::Relaxed => {
                let (old, wrote) =
                    self.relaxed
                        .rmw(actor, addr, width, success, failure, update, &self.bytes);
                if let Some(new) = wrote {
                    self.commit(addr, &new.to_le_bytes()[..width]);
                }
                Ok(old)
            }
        }
    }

    /// Whether a fence is a scheduling point of its own. Under `sc` a fence changes nothing.
    /// Under `tso` only `mfence` does anything, and what it does (drain the actor's own buffer)
    /// no other actor can tell from the drains the scheduler may already pick before it, so
    /// letting it take effect in the step of the access before it loses no outcome. Under
    /// `relaxed` a fence changes the actor's views and the global SC view, whose order against
    /// other actors' accesses matters: there it stays a scheduling point. (Measured and checked
    /// against the litmus table and the planted bugs: docs/decisions.md.)
    pub fn fence_is_scheduling_point(&self) -> bool {
        self.mode == MemMode::Relaxed
    }

    pub fn fence(&mut self, actor: usize, order: Ordering) {
        match self.mode {
            MemMode::Sc => {}
            // Only `mfence` (SeqCst) orders anything on x86; acquire/release fences are free.
            MemMode::Tso => {
                if order == Ordering::SeqCst {
                    self.flush(actor);
                }
            }
            MemMode::Relaxed => self.relaxed.fence(actor, order),
        }
    }

    /// The signaller's side of a kernel-mediated signal. Signalling a device or the host (an
    /// `out` or MMIO exit, a syscall) is serializing on x86, so under tso it drains the
    /// signaller's store buffer; under relaxed it is a release, whose view the woken side
    /// acquires with `sync_acquire`.
    pub fn sync_release(&mut self, actor: usize) -> SyncToken {
        match self.mode {
            MemMode::Sc => SyncToken(None),
            MemMode::Tso => {
                self.flush(actor);
                SyncToken(None)
            }
            MemMode::Relaxed => SyncToken(Some(self.relaxed.release_clock(actor))),
        }
    }

    /// An actor's edge at exit, taken without draining anything: a thread's exit is not a point
    /// other CPUs must wait for. Whoever joins it drains its buffer first (`sync_join`).
    pub fn exit_edge(&mut self, actor: usize) -> SyncToken {
        match self.mode {
            MemMode::Relaxed => SyncToken(Some(self.relaxed.release_clock(actor))),
            MemMode::Sc | MemMode::Tso => SyncToken(None),
        }
    }

    /// `joiner` joins the finished `child`: everything the child stored is visible after it.
    pub fn sync_join(&mut self, joiner: usize, child: usize, exit_edge: &SyncToken) {
        self.flush(child);
        self.sync_acquire(joiner, exit_edge);
    }

    /// The woken side of a kernel-mediated signal.
    pub fn sync_acquire(&mut self, actor: usize, token: &SyncToken) {
        if let (MemMode::Relaxed, Some(clock)) = (self.mode, &token.0) {
            self.relaxed.acquire_clock(actor, clock);
        }
    }

    /// Actors whose store buffers hold stores not yet in memory, in ascending order.
    pub fn actors_with_pending_stores(&self) -> impl Iterator<Item = usize> + '_ {
        self.tso.nonempty()
    }

    pub fn has_pending_stores(&self) -> bool {
        self.tso.any()
    }

    /// Moves the oldest buffered store of `actor` to memory.
    pub fn drain_one(&mut self, actor: usize) -> Option<Drained> {
        let entry = self.tso.pop(actor)?;
        let drained = Drained {
            addr: entry.addr,
            len: entry.data.as_slice().len(),
        };
        self.commit(entry.addr, entry.data.as_slice());
        Some(drained)
    }

    /// Actors with a buffered store older than the age bound at `step`.
    pub fn overdue(&self, step: u64) -> Option<usize> {
        self.tso
            .oldest_older_than(step.saturating_sub(self.max_buffer_age))
    }

    /// Drains every buffered store of `actor`.
    pub fn flush(&mut self, actor: usize) {
        while self.drain_one(actor).is_some() {}
    }

    fn commit(&mut self, addr: u64, data: &[u8]) {
        self.commits += 1;
        self.bytes[addr as usize..addr as usize + data.len()].copy_from_slice(data);
    }
}
