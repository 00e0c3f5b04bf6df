//! The `relaxed` mode: a view-based operational model of C11 atomics (release/acquire, relaxed,
//! SeqCst, fences), close to what loom and CDSChecker use.
//!
//! - Each byte keeps its last few stores in modification order (execution order here), starting
//!   with the initial value (store id 0, visible to everyone).
//! - Each actor has a vector clock over actors' store counters. A store is *visible* to an actor
//!   when it happens-before the actor (its counter is within the actor's clock) or is the actor's
//!   own. Release stores (and relaxed stores after a release fence) carry the storer's clock; an
//!   acquire load (or a later acquire fence) that reads one joins it.
//! - An atomic load may read any store to its location from the newest store it must see (the
//!   newest visible one, or the newest it has already read or written: coherence) up to the
//!   newest store overall; the decision source picks, newest first so that the default is the
//!   sequentially consistent answer.
//! - SeqCst stores and fences publish the actor's clock into a global SC view; SeqCst loads and
//!   fences join it first. That forbids SB with SC fences or SC accesses, and IRIW with SC loads.
//! - Plain (non-atomic) reads take the newest visible store with no choice: the oldest value the
//!   reader is entitled to, so unsynchronised data shows up as stale bytes.
//! - RMWs read the newest store (atomicity) and continue its release sequence.
//!
//! Limits: load buffering (LB, r1 = r2 = 1) needs out-of-thin-air-style speculation and is never
//! produced; it is allowed by C11 and Arm, so this mode under-approximates (it never shows an
//! outcome C11 forbids). Histories keep the newest `HISTORY` stores per byte.

use super::{Access, LoadNote, Ordering, is_acquire, is_release, le_value};
use crate::decision::DecisionSource;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

const HISTORY: usize = 5;
/// Bytes per history page. A page is made (seeded from committed memory) when a byte of it is
/// first stored to or read atomically; small pages keep that cost to what a run touches.
const PAGE: usize = 64;

/// Hashes a `u64` key by one multiply (keys are addresses and page numbers). These maps are
/// only looked up, never iterated, so their order cannot reach a run.
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (v ^ (v >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type AddrMap<V> = HashMap<u64, V, BuildHasherDefault<AddrHasher>>;

type Clock = Vec<u32>;

pub(super) fn join_clock(into: &mut Clock, from: &Clock) {
    join(into, from);
}

fn join(into: &mut Clock, from: &Clock) {
    if into.len() < from.len() {
        into.resize(from.len(), 0);
    }
    for (a, b) in into.iter_mut().zip(from) {
        *a = (*a).max(*b);
    }
}

#[derive(Clone, Copy)]
struct ByteHistory {
    ids: [u32; HISTORY],
    vals: [u8; HISTORY],
    len: u8,
}

impl ByteHistory {
    fn initial(value: u8) -> Self {
        Self {
            ids: [0; HISTORY],
            vals: [value; HISTORY],
            len: 1,
        }
    }

    fn push(&mut self, id: u32, value: u8) {
        let len = self.len as usize;
        if len == HISTORY {
            self.ids.copy_within(1.., 0);
            self.vals.copy_within(1.., 0);
            self.ids[HISTORY - 1] = id;
            self.vals[HISTORY - 1] = value;
        } else {
            self.ids[len] = id;
            self.vals[len] = value;
            self.len += 1;
        }
    }

    fn entries(&self) -> impl DoubleEndedIterator<Item = (u32, u8)> + '_ {
        self.ids[..self.len as usize]
            .iter()
            .copied()
            .zip(self.vals[..self.len as usize].iter().copied())
    }

    /// Value of the newest store with id <= `id`, or the oldest kept one.
    fn value_at(&self, id: u32) -> u8 {
        self.entries()
            .rev()
            .find(|(i, _)| *i <= id)
            .map_or(self.vals[0], |(_, v)| v)
    }
}

struct StoreRecord {
    actor: u32,
    counter: u32,
    release: Option<Rc<Clock>>,
}

#[derive(Default)]
struct ActorView {
    clock: Clock,
    /// Newest store id read or written per atomic location (coherence).
    seen: AddrMap<u32>,
    release_fence: Option<Rc<Clock>>,
    acquire_pending: Clock,
}

#[derive(Default)]
pub(super) struct Views {
    stores: Vec<StoreRecord>,
    pages: AddrMap<Box<[ByteHistory]>>,
    actors: Vec<ActorView>,
    sc_view: Clock,
    /// Pages and actor views of earlier runs, reset, for the next run to reuse.
    spare_pages: Vec<Box<[ByteHistory]>>,
    spare_actors: Vec<ActorView>,
}

const INIT_ACTOR: u32 = u32::MAX;

impl Views {
    fn ensure_init(&mut self) {
        if self.stores.is_empty() {
            self.stores.push(StoreRecord {
                actor: INIT_ACTOR,
                counter: 0,
                release: None,
            });
        }
    }

    /// Forgets everything (a new run), keeping pages, actor views and tables allocated.
    pub fn reset(&mut self) {
        self.stores.clear();
        self.spare_pages.extend(self.pages.drain().map(|(_, p)| p));
        for mut view in self.actors.drain(..) {
            view.clock.clear();
            view.seen.clear();
            view.release_fence = None;
            view.acquire_pending.clear();
            self.spare_actors.push(view);
        }
        self.sc_view.clear();
    }

    fn actor(&mut self, actor: usize) -> &mut ActorView {
        while self.actors.len() <= actor {
            let view = self.spare_actors.pop().unwrap_or_default();
            self.actors.push(view);
        }
        &mut self.actors[actor]
    }

    /// Joins the global SC view into the actor's clock.
    fn join_sc(&mut self, actor: usize) {
        self.actor(actor);
        join(&mut self.actors[actor].clock, &self.sc_view);
    }

    fn history(&mut self, addr: u64, committed: &[u8]) -> &mut ByteHistory {
        let page = addr / PAGE as u64;
        let spare = &mut self.spare_pages;
        let slot = self.pages.entry(page).or_insert_with(|| {
            let base = (page as usize) * PAGE;
            let init =
                |i: usize| ByteHistory::initial(committed.get(base + i).copied().unwrap_or(0));
            match spare.pop() {
                Some(mut p) => {
                    for (i, h) in p.iter_mut().enumerate() {
                        *h = init(i);
                    }
                    p
                }
                None => (0..PAGE).map(init).collect(),
            }
        });
        &mut slot[(addr % PAGE as u64) as usize]
    }

    fn peek_history(&self, addr: u64) -> Option<&ByteHistory> {
        self.pages
            .get(&(addr / PAGE as u64))
            .map(|p| &p[(addr % PAGE as u64) as usize])
    }

    pub fn poke(&mut self, addr: u64, data: &[u8]) {
        // A poke is a new initial value: forget the history of those bytes.
        for (i, b) in data.iter().enumerate() {
            let a = addr + i as u64;
            if let Some(page) = self.pages.get_mut(&(a / PAGE as u64)) {
                page[(a % PAGE as u64) as usize] = ByteHistory::initial(*b);
            }
        }
    }

    fn visible(&self, actor: usize, id: u32) -> bool {
        let rec = &self.stores[id as usize];
        rec.actor == INIT_ACTOR
            || rec.actor as usize == actor
            || self
                .actors
                .get(actor)
                .and_then(|v| v.clock.get(rec.actor as usize))
                .is_some_and(|c| rec.counter <= *c)
    }

    pub fn load(
        &mut self,
        actor: usize,
        addr: u64,
        buf: &mut [u8],
        access: Access,
        committed: &[u8],
        ds: &mut DecisionSource,
    ) -> LoadNote {
        self.ensure_init();
        match access {
            Access::Plain => {
                for (i, out) in buf.iter_mut().enumerate() {
                    let a = addr + i as u64;
                    *out = match self.peek_history(a) {
                        None => committed[a as usize],
                        Some(h) => {
                            let h = *h;
                            h.entries()
                                .rev()
                                .find(|(id, _)| self.visible(actor, *id))
                                .map_or(h.vals[0], |(_, v)| v)
                        }
                    };
                }
                LoadNote::default()
            }
            Access::Atomic(order) => {
                if order == Ordering::SeqCst {
                    self.join_sc(actor);
                }
                let seen = self.actor(actor).seen.get(&addr).copied().unwrap_or(0);
                let history = *self.history(addr, committed);
                let ids = &history.ids[..history.len as usize];
                // The newest entry this actor must not read behind.
                let floor = ids
                    .iter()
                    .rposition(|id| *id <= seen || self.visible(actor, *id))
                    .unwrap_or(0);
                let candidates = ids.len() - floor;
                let back = ds.index(candidates);
                let chosen = ids[ids.len() - 1 - back];
                for (i, out) in buf.iter_mut().enumerate() {
                    *out = self.history(addr + i as u64, committed).value_at(chosen);
                }
                let release = self.stores[chosen as usize].release.clone();
                let view = self.actor(actor);
                view.seen.insert(addr, chosen);
                if let Some(rel) = release {
                    if is_acquire(order) {
                        join(&mut view.clock, &rel);
                    } else {
                        join(&mut view.acquire_pending, &rel);
                    }
                }
                LoadNote {
                    forwarded: false,
                    stale_by: back as u8,
                }
            }
        }
    }

    /// Records a store; the caller writes the bytes into committed memory afterwards.
    pub fn store(
        &mut self,
        actor: usize,
        addr: u64,
        data: &[u8],
        access: Access,
        committed: &[u8],
    ) {
        self.prepare(addr, data.len(), committed);
        self.store_with(actor, addr, data, access, None);
    }

    fn store_with(
        &mut self,
        actor: usize,
        addr: u64,
        data: &[u8],
        access: Access,
        inherited: Option<Rc<Clock>>,
    ) -> u32 {
        self.ensure_init();
        let id = self.stores.len() as u32;
        let view = self.actor(actor);
        if view.clock.len() <= actor {
            view.clock.resize(actor + 1, 0);
        }
        view.clock[actor] += 1;
        let counter = view.clock[actor];
        let mut release = match access {
            Access::Atomic(o) if is_release(o) => Some(Rc::new(view.clock.clone())),
            Access::Atomic(_) => view.release_fence.clone(),
            Access::Plain => None,
        };
        if let Some(inh) = inherited {
            let mut merged = release.as_deref().cloned().unwrap_or_default();
            join(&mut merged, &inh);
            release = Some(Rc::new(merged));
        }
        if let Access::Atomic(_) = access {
            view.seen.insert(addr, id);
        }
        if access == Access::Atomic(Ordering::SeqCst) {
            join(&mut self.sc_view, &self.actors[actor].clock);
        }
        self.stores.push(StoreRecord {
            actor: actor as u32,
            counter,
            release,
        });
        for (i, b) in data.iter().enumerate() {
            let a = addr + i as u64;
            // Pages were created by `prepare` before the store, seeded from committed memory.
            if let Some(page) = self.pages.get_mut(&(a / PAGE as u64)) {
                page[(a % PAGE as u64) as usize].push(id, *b);
            }
        }
        id
    }

    /// Makes sure the pages under `addr..addr+len` exist, seeded from committed memory.
    pub fn prepare(&mut self, addr: u64, len: usize, committed: &[u8]) {
        let mut page = addr / PAGE as u64;
        let last = (addr + len.max(1) as u64 - 1) / PAGE as u64;
        while page <= last {
            self.history(page * PAGE as u64, committed);
            page += 1;
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn rmw(
        &mut self,
        actor: usize,
        addr: u64,
        width: usize,
        success: Ordering,
        failure: Ordering,
        update: &mut dyn FnMut(u64) -> Option<u64>,
        committed: &[u8],
    ) -> (u64, Option<u64>) {
        self.ensure_init();
        self.prepare(addr, width, committed);
        let mut bytes = [0u8; 8];
        let newest = {
            let h = self.history(addr, committed);
            h.ids[h.len as usize - 1]
        };
        for (i, b) in bytes[..width].iter_mut().enumerate() {
            *b = self.history(addr + i as u64, committed).value_at(newest);
        }
        let old = le_value(&bytes[..width]);
        let new = update(old);
        let order = if new.is_some() { success } else { failure };
        if order == Ordering::SeqCst || success == Ordering::SeqCst {
            self.join_sc(actor);
        }
        let release = self.stores[newest as usize].release.clone();
        {
            let view = self.actor(actor);
            view.seen.insert(addr, newest);
            if let Some(rel) = &release {
                if is_acquire(order) {
                    join(&mut view.clock, rel);
                } else {
                    join(&mut view.acquire_pending, rel);
                }
            }
        }
        if let Some(value) = new {
            // The RMW continues the release sequence of the store it read.
            self.store_with(
                actor,
                addr,
                &value.to_le_bytes()[..width],
                Access::Atomic(success),
                release,
            );
        }
        (old, new)
    }

    /// The actor's current clock, as a release edge for a kernel-mediated signal.
    pub fn release_clock(&mut self, actor: usize) -> Rc<Clock> {
        Rc::new(self.actor(actor).clock.clone())
    }

    /// Joins a signal's release edge into the actor's clock.
    pub fn acquire_clock(&mut self, actor: usize, clock: &Clock) {
        join(&mut self.actor(actor).clock, clock);
    }

    pub fn fence(&mut self, actor: usize, order: Ordering) {
        self.ensure_init();
        if order == Ordering::SeqCst {
            self.join_sc(actor);
        }
        let view = self.actor(actor);
        if is_acquire(order) {
            let pending = std::mem::take(&mut view.acquire_pending);
            join(&mut view.clock, &pending);
        }
        if is_release(order) {
            view.release_fence = Some(Rc::new(view.clock.clone()));
        }
        if order == Ordering::SeqCst {
            join(&mut self.sc_view, &self.actors[actor].clock);
        }
    }
}
