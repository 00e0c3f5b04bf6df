//! A named window onto shared memory. Every access is bounds-checked against the window and is a
//! scheduling point; atomics are 1, 2, 4 or 8 bytes, little-endian.
//!
//! Trace lines name what an access touched: the region it was allocated as and, where a
//! component named it ([`Region::name_field`], [`Region::slice`], typed atomics made with
//! `named`), the field: `mbox.seq`, `shm.pipe3.g2h.write`, `shm.pipe3.g2h.data+120`.

use crate::ctx::Ctx;
use crate::kernel::ActorId;
use crate::memory::{Access, LoadNote, MemError, Ordering, le_value, order_code, short_order};
use crate::names::Place;
use crate::trace::{MemEvent, MemOp, fnv1a_of};
use std::rc::Rc;

/// ` w=<width>` in a trace line, or nothing when the field's name says it (no allocation:
/// this is on every access).
struct Width(Option<usize>);

impl std::fmt::Display for Width {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(w) => write!(f, " w={w}"),
            None => Ok(()),
        }
    }
}

#[derive(Clone)]
pub struct Region {
    ctx: Ctx,
    name: Rc<str>,
    base: u64,
    len: u64,
}

/// Read-modify-write operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RmwOp {
    Swap(u64),
    Add(u64),
    Sub(u64),
    Or(u64),
    And(u64),
}

impl Region {
    /// A view of `len` bytes of shared memory at `base` (see [`Region::alloc`] for fresh memory).
    pub fn new(ctx: Ctx, name: &str, base: u64, len: u64) -> Self {
        Self {
            ctx,
            name: Rc::from(name),
            base,
            len,
        }
    }

    /// `len` bytes of fresh, zeroed shared memory, usable at once, also while the world runs
    /// (a component that maps a new buffer or page).
    pub fn alloc(ctx: &Ctx, name: &str, len: u64) -> Self {
        let base = ctx.with(|k| {
            let base = k.mem.grow(len as usize);
            k.names.region(base, len, name);
            base
        });
        Region::new(ctx.clone(), name, base, len)
    }

    /// Names `[offset, offset + len)` of this region for trace lines (a header field, a data
    /// area). A later name over the same bytes replaces it. Out-of-range names are ignored:
    /// naming never fails an access.
    pub fn name_field(&self, offset: u64, len: u64, name: &str) {
        if self.addr(offset, len as usize).is_ok() {
            self.ctx
                .with(|k| k.name_field(self.base + offset, len, name));
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn base(&self) -> u64 {
        self.base
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A sub-window, bounds-checked, and named as a field of this region in trace lines.
    pub fn slice(&self, name: &str, offset: u64, len: u64) -> Result<Region, MemError> {
        self.addr(offset, len as usize)?;
        self.name_field(offset, len, name);
        Ok(Region::new(self.ctx.clone(), name, self.base + offset, len))
    }

    /// Checks that `[offset, offset + len)` lies inside the region.
    pub(crate) fn check(&self, offset: u64, len: u64) -> Result<(), MemError> {
        self.addr(offset, len as usize).map(|_| ())
    }

    fn addr(&self, offset: u64, len: usize) -> Result<u64, MemError> {
        match offset.checked_add(len as u64) {
            Some(end) if end <= self.len => Ok(self.base + offset),
            _ => Err(MemError::OutOfBounds {
                addr: self.base.wrapping_add(offset),
                len: len as u64,
                size: self.len,
            }),
        }
    }

    fn actor(k: &crate::kernel::Kernel) -> usize {
        k.current.map_or(usize::MAX, ActorId::index)
    }

    /// The access's place and, unless it is exactly one named field, its width.
    fn where_(k: &crate::kernel::Kernel, addr: u64, width: usize) -> (Place, Width) {
        let place = k.place(addr, width as u64);
        let w = Width((!place.is_whole_field()).then_some(width));
        (place, w)
    }

    fn note_code(n: LoadNote) -> u8 {
        match (n.forwarded, n.stale_by) {
            (true, _) => 1,
            (false, 0) => 0,
            _ => 2,
        }
    }

    fn event(op: MemOp, order: u8, addr: u64, len: usize, a: u64, b: u64, c: u64) -> MemEvent {
        MemEvent {
            op,
            order,
            note: 0,
            len: len as u32,
            addr,
            a,
            b,
            c,
        }
    }

    fn note(n: LoadNote) -> &'static str {
        match (n.forwarded, n.stale_by) {
            (true, _) => " fwd",
            (false, 0) => "",
            _ => " stale",
        }
    }

    /// Atomic load of `width` bytes at `offset`.
    pub async fn load(&self, offset: u64, width: usize, order: Ordering) -> Result<u64, MemError> {
        self.ctx.yield_now().await;
        let addr = self.addr(offset, width)?;
        let mut k = self.ctx.kernel.borrow_mut();
        let actor = Self::actor(&k);
        let mut buf = [0u8; 8];
        let k = &mut *k;
        let note = k.mem.load(
            actor,
            addr,
            &mut buf[..width.min(8)],
            Access::Atomic(order),
            &mut k.ds,
        )?;
        let value = le_value(&buf[..width.min(8)]);
        let mut e = Self::event(MemOp::Load, order_code(order), addr, width, value, 0, 0);
        e.note = Self::note_code(note);
        k.trace_mem(k.current, &e, |k| {
            let (place, w) = Self::where_(k, addr, width);
            format!(
                "{place}{w} v={value} o={}{}",
                short_order(order),
                Self::note(note)
            )
        });
        Ok(value)
    }

    /// Atomic store of the low `width` bytes of `value` at `offset`.
    pub async fn store(
        &self,
        offset: u64,
        width: usize,
        value: u64,
        order: Ordering,
    ) -> Result<(), MemError> {
        self.ctx.yield_now().await;
        let addr = self.addr(offset, width)?;
        let mut k = self.ctx.kernel.borrow_mut();
        let actor = Self::actor(&k);
        let step = k.step;
        k.mem.store(
            actor,
            addr,
            &value.to_le_bytes()[..width.min(8)],
            Access::Atomic(order),
            step,
        )?;
        let e = Self::event(MemOp::Store, order_code(order), addr, width, value, 0, 0);
        let who = k.current;
        k.trace_mem(who, &e, |k| {
            let (place, w) = Self::where_(k, addr, width);
            format!("{place}{w} v={value} o={}", short_order(order))
        });
        Ok(())
    }

    /// Atomic read-modify-write; returns the old value.
    pub async fn rmw(
        &self,
        offset: u64,
        width: usize,
        op: RmwOp,
        order: Ordering,
    ) -> Result<u64, MemError> {
        self.ctx.yield_now().await;
        let addr = self.addr(offset, width)?;
        let mask = if width >= 8 {
            u64::MAX
        } else {
            (1u64 << (width * 8)) - 1
        };
        let mut update = |old: u64| {
            Some(
                match op {
                    RmwOp::Swap(v) => v,
                    RmwOp::Add(v) => old.wrapping_add(v),
                    RmwOp::Sub(v) => old.wrapping_sub(v),
                    RmwOp::Or(v) => old | v,
                    RmwOp::And(v) => old & v,
                } & mask,
            )
        };
        let mut k = self.ctx.kernel.borrow_mut();
        let actor = Self::actor(&k);
        let old = k.mem.rmw(actor, addr, width, order, order, &mut update)?;
        let (code, operand) = match op {
            RmwOp::Swap(v) => (1, v),
            RmwOp::Add(v) => (2, v),
            RmwOp::Sub(v) => (3, v),
            RmwOp::Or(v) => (4, v),
            RmwOp::And(v) => (5, v),
        };
        let e = Self::event(
            MemOp::Rmw,
            order_code(order),
            addr,
            width,
            code,
            operand,
            old,
        );
        let who = k.current;
        k.trace_mem(who, &e, |k| {
            let (place, w) = Self::where_(k, addr, width);
            format!("{place}{w} {op:?} old={old} o={}", short_order(order))
        });
        Ok(old)
    }

    /// Atomic compare-exchange; `Ok(old)` on success, `Err(current)` on failure.
    pub async fn compare_exchange(
        &self,
        offset: u64,
        width: usize,
        expected: u64,
        new: u64,
        success: Ordering,
        failure: Ordering,
    ) -> Result<Result<u64, u64>, MemError> {
        self.ctx.yield_now().await;
        let addr = self.addr(offset, width)?;
        let mut update = |old: u64| (old == expected).then_some(new);
        let mut k = self.ctx.kernel.borrow_mut();
        let actor = Self::actor(&k);
        let old = k
            .mem
            .rmw(actor, addr, width, success, failure, &mut update)?;
        let ok = old == expected;
        let order = order_code(success) | order_code(failure) << 4;
        let e = Self::event(MemOp::Cas, order, addr, width, expected, new, old);
        let who = k.current;
        k.trace_mem(who, &e, |k| {
            let (place, w) = Self::where_(k, addr, width);
            format!("{place}{w} expect={expected} new={new} old={old} ok={ok}")
        });
        Ok(if ok { Ok(old) } else { Err(old) })
    }

    /// A fence by the current actor (see `Ctx::fence`). A scheduling point.
    pub async fn fence(&self, order: Ordering) {
        self.ctx.fence(order).await;
    }

    /// Plain (non-atomic) copy into shared memory.
    pub async fn write_bytes(&self, offset: u64, data: &[u8]) -> Result<(), MemError> {
        self.ctx.yield_now().await;
        let addr = self.addr(offset, data.len())?;
        let mut k = self.ctx.kernel.borrow_mut();
        let actor = Self::actor(&k);
        let step = k.step;
        k.mem.store(actor, addr, data, Access::Plain, step)?;
        let fnv = fnv1a_of(data);
        let e = Self::event(MemOp::Write, 0, addr, data.len(), fnv, 0, 0);
        let who = k.current;
        k.trace_mem(who, &e, |k| {
            let place = k.place(addr, data.len() as u64);
            format!("{place} len={} fnv={fnv:016x}", data.len())
        });
        Ok(())
    }

    /// Plain (non-atomic) copy out of shared memory.
    pub async fn read_bytes(&self, offset: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.ctx.yield_now().await;
        let addr = self.addr(offset, buf.len())?;
        let mut k = self.ctx.kernel.borrow_mut();
        let actor = Self::actor(&k);
        let k = &mut *k;
        let note = k.mem.load(actor, addr, buf, Access::Plain, &mut k.ds)?;
        let fnv = fnv1a_of(buf);
        let mut e = Self::event(MemOp::Read, 0, addr, buf.len(), fnv, 0, 0);
        e.note = Self::note_code(note);
        let len = buf.len();
        k.trace_mem(k.current, &e, |k| {
            let place = k.place(addr, len as u64);
            format!("{place} len={len} fnv={fnv:016x}{}", Self::note(note))
        });
        Ok(())
    }

    pub async fn load_u64(&self, offset: u64, order: Ordering) -> Result<u64, MemError> {
        self.load(offset, 8, order).await
    }

    pub async fn store_u64(
        &self,
        offset: u64,
        value: u64,
        order: Ordering,
    ) -> Result<(), MemError> {
        self.store(offset, 8, value, order).await
    }

    pub async fn load_u32(&self, offset: u64, order: Ordering) -> Result<u32, MemError> {
        Ok(self.load(offset, 4, order).await? as u32)
    }

    pub async fn store_u32(
        &self,
        offset: u64,
        value: u32,
        order: Ordering,
    ) -> Result<(), MemError> {
        self.store(offset, 4, u64::from(value), order).await
    }

    /// Committed value (store buffers excluded), as an oracle sees it. Not a scheduling point.
    pub fn peek_u64(&self, offset: u64) -> Result<u64, MemError> {
        let addr = self.addr(offset, 8)?;
        self.ctx.peek(|m| m.committed(addr, 8).map(le_value))
    }

    /// Writes committed memory outside any actor (set-up, or a hostile device).
    pub fn poke(&self, offset: u64, data: &[u8]) -> Result<(), MemError> {
        let addr = self.addr(offset, data.len())?;
        self.ctx.with(|k| k.mem.poke(addr, data))
    }
}
