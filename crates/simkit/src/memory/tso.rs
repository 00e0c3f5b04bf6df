//! Per-actor FIFO store buffers for the x86-TSO mode.

use std::collections::VecDeque;

/// A buffered store's bytes: inline up to 16 (every atomic, most small copies), else on the heap.
pub(super) enum Bytes {
    Inline([u8; 16], u8),
    Heap(Vec<u8>),
}

impl Bytes {
    fn of(data: &[u8]) -> Self {
        if data.len() <= 16 {
            let mut b = [0u8; 16];
            b[..data.len()].copy_from_slice(data);
            Bytes::Inline(b, data.len() as u8)
        } else {
            Bytes::Heap(data.to_vec())
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Inline(b, n) => &b[..*n as usize],
            Bytes::Heap(v) => v,
        }
    }
}

pub(super) struct Buffered {
    pub addr: u64,
    pub data: Bytes,
    /// Scheduler step at which the store entered the buffer (for the age bound).
    pub since: u64,
}

#[derive(Default)]
pub(super) struct StoreBuffers {
    buffers: Vec<VecDeque<Buffered>>,
    /// Actors with a non-empty buffer, ascending.
    nonempty: Vec<usize>,
}

impl StoreBuffers {
    pub fn push(&mut self, actor: usize, addr: u64, data: &[u8], step: u64) {
        if self.buffers.len() <= actor {
            self.buffers.resize_with(actor + 1, VecDeque::new);
        }
        self.buffers[actor].push_back(Buffered {
            addr,
            data: Bytes::of(data),
            since: step,
        });
        if let Err(pos) = self.nonempty.binary_search(&actor) {
            self.nonempty.insert(pos, actor);
        }
    }

    pub fn pop(&mut self, actor: usize) -> Option<Buffered> {
        let buffer = self.buffers.get_mut(actor)?;
        let entry = buffer.pop_front();
        if buffer.is_empty()
            && let Ok(pos) = self.nonempty.binary_search(&actor)
        {
            self.nonempty.remove(pos);
        }
        entry
    }

    /// Overlays the actor's own buffered stores (oldest to newest) onto `buf`, which holds memory
    /// at `addr`. Returns whether any byte was forwarded.
    pub fn forward(&self, actor: usize, addr: u64, buf: &mut [u8]) -> bool {
        let Some(buffer) = self.buffers.get(actor) else {
            return false;
        };
        let end = addr + buf.len() as u64;
        let mut forwarded = false;
        for entry in buffer {
            let data = entry.data.as_slice();
            let e_end = entry.addr + data.len() as u64;
            let lo = addr.max(entry.addr);
            let hi = end.min(e_end);
            if lo < hi {
                let dst = (lo - addr) as usize..(hi - addr) as usize;
                let src = (lo - entry.addr) as usize..(hi - entry.addr) as usize;
                buf[dst].copy_from_slice(&data[src]);
                forwarded = true;
            }
        }
        forwarded
    }

    pub fn nonempty(&self) -> impl Iterator<Item = usize> + '_ {
        self.nonempty.iter().copied()
    }

    /// Empties every buffer, keeping the allocations (a worker's next run).
    pub fn reset(&mut self) {
        for b in &mut self.buffers {
            b.clear();
        }
        self.nonempty.clear();
    }

    pub fn any(&self) -> bool {
        !self.nonempty.is_empty()
    }

    /// The lowest actor whose oldest buffered store entered before `step`.
    pub fn oldest_older_than(&self, step: u64) -> Option<usize> {
        self.nonempty
            .iter()
            .copied()
            .find(|a| self.buffers[*a].front().is_some_and(|e| e.since < step))
    }
}
