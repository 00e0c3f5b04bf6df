//! Start images: a module's instance state right after its start function (`_initialize`),
//! taken once and put into every later instance instead of running the start function again.
//! A Go reactor spends about ten million wasmi fuel in `_initialize`; a sweep makes a new
//! host for every seed, so without this every seed would pay it for every cell.
//!
//! The state a start function can leave is linear memory, mutable globals, and the WASI
//! layer's descriptors and output; tables and segments it cannot change (the module is
//! refused by [`rewrite`] otherwise). An image keeps the memory pages that differ from a fresh
//! instance's, every mutable global, the WASI state, and the lines start-up wrote. Start-up
//! runs in a fixed environment (see `crate::wasi`), so the image is the same in every run.
//!
//! Images are kept per thread (a sweep's worker threads each make their own once), keyed by
//! everything start-up depends on: the engine, the module's bytes, the start fuel budget, the
//! memory limit, and the WASI arguments and environment.

pub mod rewrite;

use crate::engine::{GlobalValue, Instance, Trap};
use crate::wasi::state::WasiState;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

/// The size of a WebAssembly page.
pub const PAGE: usize = 65_536;

/// An instance's state after its start function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartImage {
    /// The memory's size in bytes.
    pub memory_size: u64,
    /// (page index, contents) of every page that differs from a fresh instance's.
    pub pages: Vec<(u32, Vec<u8>)>,
    /// Every mutable global, by its export name.
    pub globals: Vec<(String, GlobalValue)>,
    pub wasi: WasiState,
    /// The lines start-up wrote, as (fd, line).
    pub output: Vec<(u32, String)>,
    /// Fuel the start function used.
    pub start_fuel: u64,
}

impl StartImage {
    /// Takes the state of `started` (after its start function), keeping the pages that
    /// differ from `fresh` (an instance of the same module that ran nothing).
    pub fn capture<I: Instance>(
        started: &mut I,
        fresh: &mut I,
        globals: &[String],
        wasi: WasiState,
        output: Vec<(u32, String)>,
        start_fuel: u64,
    ) -> Result<Self, Trap> {
        let memory_size = started.memory_size();
        let whole = |i: &mut I| {
            let size = u32::try_from(i.memory_size())
                .map_err(|_| Trap::new("a memory of 4 GiB cannot be snapshotted"))?;
            i.memory()
                .read(0, size)
                .map_err(|e| Trap::new(e.to_string()))
        };
        let (after, before) = (whole(started)?, whole(fresh)?);
        let mut pages = Vec::new();
        for (index, page) in after.chunks(PAGE).enumerate() {
            let start = index * PAGE;
            let same = match before.get(start..start + page.len()) {
                Some(old) => old == page,
                None => page.iter().all(|b| *b == 0),
            };
            if !same {
                pages.push((index as u32, page.to_vec()));
            }
        }
        let mut values = Vec::with_capacity(globals.len());
        for name in globals {
            let value = started
                .global(name)
                .ok_or_else(|| Trap::new(format!("global `{name}` cannot be read")))?;
            values.push((name.clone(), value));
        }
        Ok(StartImage {
            memory_size,
            pages,
            globals: values,
            wasi,
            output,
            start_fuel,
        })
    }

    /// Puts the image into `fresh` (an instance that ran nothing).
    pub fn restore<I: Instance>(&self, fresh: &mut I) -> Result<(), Trap> {
        fresh.grow_memory(self.memory_size)?;
        for (index, page) in &self.pages {
            let at = u32::try_from(*index as usize * PAGE)
                .map_err(|_| Trap::new("a page past 4 GiB"))?;
            fresh
                .memory()
                .write(at, page)
                .map_err(|e| Trap::new(e.to_string()))?;
        }
        for (name, value) in &self.globals {
            fresh.set_global(name, *value)?;
        }
        Ok(())
    }
}

/// What start-up depends on besides the environment (which is fixed).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ImageKey {
    pub engine: &'static str,
    pub wasm: Rc<[u8]>,
    pub start_fuel: u64,
    pub max_memory: u64,
    pub args: Vec<String>,
    pub env: Vec<String>,
}

/// What is known about a module's start-up.
#[derive(Clone, Debug)]
pub enum Known {
    /// Every instance may start from this image.
    Image(Rc<StartImage>),
    /// Start-up cannot be snapshotted (it called a Pulp capability, or the module or engine
    /// does not allow it): every instance runs its start function.
    RunEachTime,
}

thread_local! {
    static IMAGES: RefCell<BTreeMap<ImageKey, Known>> = RefCell::default();
}

pub fn lookup(key: &ImageKey) -> Option<Known> {
    IMAGES.with(|m| m.borrow().get(key).cloned())
}

pub fn remember(key: ImageKey, known: Known) {
    IMAGES.with(|m| m.borrow_mut().insert(key, known));
}

/// Forgets every image of this thread (benchmarks measuring start-up without images).
pub fn forget_all() {
    IMAGES.with(|m| m.borrow_mut().clear());
}
