//! A named window onto shared memory. Every access is bounds-checked against the window and is a
//! scheduling point; atomics are 1, 2, 4 or 8 bytes, little-endian.

use crate::ctx::Ctx;
use crate::kernel::ActorId;
use crate::memory::{Access, LoadNote, MemError, Ordering, le_value, short_order};
use crate::trace::fnv1a_of;
use std::rc::Rc;

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
    pub(crate) fn new(ctx: Ctx, name: &str, base: u64, len: u64) -> Self {
        Self {
            ctx,
            name: Rc::from(name),
            base,
            len,
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

    /// A sub-window, bounds-checked.
    pub fn slice(&self, name: &str, offset: u64, len: u64) -> Result<Region, MemError> {
        self.addr(offset, len as usize)?;
        Ok(Region::new(self.ctx.clone(), name, self.base + offset, len))
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
        k.trace(
            "load",
            format_args!(
                "{}+{offset} w={width} v={value} o={}{}",
                self.name,
                short_order(order),
                Self::note(note)
            ),
        );
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
        k.trace(
            "store",
            format_args!(
                "{}+{offset} w={width} v={value} o={}",
                self.name,
                short_order(order)
            ),
        );
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
        k.trace(
            "rmw",
            format_args!(
                "{}+{offset} w={width} {op:?} old={old} o={}",
                self.name,
                short_order(order)
            ),
        );
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
        k.trace(
            "cas",
            format_args!(
                "{}+{offset} w={width} expect={expected} new={new} old={old} ok={ok}",
                self.name
            ),
        );
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
        k.trace(
            "write",
            format_args!(
                "{}+{offset} len={} fnv={:016x}",
                self.name,
                data.len(),
                fnv1a_of(data)
            ),
        );
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
        k.trace(
            "read",
            format_args!(
                "{}+{offset} len={} fnv={:016x}{}",
                self.name,
                buf.len(),
                fnv1a_of(buf),
                Self::note(note)
            ),
        );
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
