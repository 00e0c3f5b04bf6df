//! Entry locks and the wait-for graph. Every entry into a cell holds that cell's lock, so a
//! sibling call into A is serialized with A's own step loop. Cycles are found from explicit
//! call chains and a wait-for graph, never from a timeout: a call that would wait for a cell its
//! own chain holds, or for a cell whose holder (transitively) waits for its chain, fails with
//! `Reentrant` at once.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use tokio::sync::OwnedMutexGuard;

/// Which chain holds which cell, and which cell each chain waits for.
#[derive(Default)]
pub(crate) struct WaitGraph {
    held_by: BTreeMap<String, u64>,
    waits: BTreeMap<u64, String>,
    /// Cells each chain holds, outermost first.
    held: BTreeMap<u64, Vec<String>>,
}

impl WaitGraph {
    /// The cycle that waiting for `cell` would close, if any.
    pub(crate) fn cycle(&self, chain: u64, cell: &str) -> Option<Vec<String>> {
        let mine = self.held.get(&chain).cloned().unwrap_or_default();
        if mine.iter().any(|c| c == cell) {
            let mut path = mine;
            path.push(cell.to_string());
            return Some(path);
        }
        let mut path = mine;
        path.push(cell.to_string());
        let mut at = cell.to_string();
        // Each step follows a holder to what it waits for; a chain waits for at most one cell,
        // so the walk is bounded by the number of chains.
        for _ in 0..=self.waits.len() {
            let &holder = self.held_by.get(&at)?;
            if holder == chain {
                return Some(path);
            }
            let next = self.waits.get(&holder)?;
            path.push(next.clone());
            at = next.clone();
        }
        None
    }

    pub(crate) fn wait_for(&mut self, chain: u64, cell: &str) {
        self.waits.insert(chain, cell.to_string());
    }

    pub(crate) fn hold(&mut self, chain: u64, cell: &str) {
        self.held_by.insert(cell.to_string(), chain);
        self.held.entry(chain).or_default().push(cell.to_string());
    }
}

/// Holding a cell's entry lock for a chain.
pub(crate) struct Entry {
    pub(crate) graph: Rc<RefCell<WaitGraph>>,
    pub(crate) cell: String,
    pub(crate) chain: u64,
    pub(crate) _lock: OwnedMutexGuard<()>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        let mut g = self.graph.borrow_mut();
        g.held_by.remove(&self.cell);
        if let Some(held) = g.held.get_mut(&self.chain) {
            held.retain(|c| *c != self.cell);
            if held.is_empty() {
                g.held.remove(&self.chain);
            }
        }
    }
}

/// Stops waiting for a lock (also when the waiting future is dropped).
pub(crate) struct Waiting<'a> {
    pub(crate) graph: &'a RefCell<WaitGraph>,
    pub(crate) chain: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.graph.borrow_mut().waits.remove(&self.chain);
    }
}
