//! Per-actor FIFO store buffers for the x86-TSO mode.

use std::collections::{BTreeSet, VecDeque};

pub(super) struct Buffered {
    pub addr: u64,
    pub data: Vec<u8>,
    /// Scheduler step at which the store entered the buffer (for the age bound).
    pub since: u64,
}

#[derive(Default)]
pub(super) struct StoreBuffers {
    buffers: Vec<VecDeque<Buffered>>,
    nonempty: BTreeSet<usize>,
}

impl StoreBuffers {
    pub fn push(&mut self, actor: usize, addr: u64, data: &[u8], step: u64) {
        if self.buffers.len() <= actor {
            self.buffers.resize_with(actor + 1, VecDeque::new);
        }
        self.buffers[actor].push_back(Buffered {
            addr,
            data: data.to_vec(),
            since: step,
        });
        self.nonempty.insert(actor);
    }

    pub fn pop(&mut self, actor: usize) -> Option<Buffered> {
        let buffer = self.buffers.get_mut(actor)?;
        let entry = buffer.pop_front();
        if buffer.is_empty() {
            self.nonempty.remove(&actor);
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
            let e_end = entry.addr + entry.data.len() as u64;
            let lo = addr.max(entry.addr);
            let hi = end.min(e_end);
            if lo < hi {
                let dst = (lo - addr) as usize..(hi - addr) as usize;
                let src = (lo - entry.addr) as usize..(hi - entry.addr) as usize;
                buf[dst].copy_from_slice(&entry.data[src]);
                forwarded = true;
            }
        }
        forwarded
    }

    pub fn nonempty(&self) -> impl Iterator<Item = usize> + '_ {
        self.nonempty.iter().copied()
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
