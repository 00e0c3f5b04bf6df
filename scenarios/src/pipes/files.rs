//! An in-memory file store standing in for the host directory the file relay serves.
//!
//! Model: named byte vectors and open handles with a position, POSIX-like flags and errno codes.
//! Faults (buggify): short reads and short writes (at least one byte when any is possible), and
//! a little latency per operation. Callers must loop, as with real files.

use monitor::FileStore;
use ring_pipe::msg::{Whence, code, file_flags};
use simkit::Ctx;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

struct Open {
    path: String,
    pos: u64,
    flags: u64,
}

pub struct SimFiles {
    ctx: Ctx,
    files: RefCell<BTreeMap<String, Vec<u8>>>,
    open: RefCell<BTreeMap<u64, Open>>,
    next: Cell<u64>,
}

impl SimFiles {
    pub fn new(ctx: Ctx) -> Self {
        Self {
            ctx,
            files: RefCell::default(),
            open: RefCell::default(),
            next: Cell::new(1),
        }
    }

    /// The store's contents, as the host directory would show them (for oracles).
    pub fn contents(&self) -> BTreeMap<String, Vec<u8>> {
        self.files.borrow().clone()
    }

    async fn latency(&self) {
        let ns = self.ctx.choose(2_000);
        self.ctx.sleep(ns).await;
    }

    /// How much of `n` available bytes one call moves (a short transfer under buggify).
    fn amount(&self, n: u64) -> u64 {
        if n > 1 && self.ctx.buggify() {
            1 + self.ctx.choose(n)
        } else {
            n
        }
    }
}

impl FileStore for SimFiles {
    type Handle = u64;

    async fn open(&self, path: &str, flags: u64) -> Result<u64, u64> {
        self.latency().await;
        if path.is_empty() || path.len() > 255 || path.split('/').any(|p| p == "..") {
            return Err(code::INVALID);
        }
        let mut files = self.files.borrow_mut();
        match files.get_mut(path) {
            None if flags & file_flags::CREATE == 0 => return Err(code::NOT_FOUND),
            None => {
                files.insert(path.to_string(), Vec::new());
            }
            Some(data) if flags & file_flags::TRUNCATE != 0 => data.clear(),
            Some(_) => {}
        }
        let h = self.next.get();
        self.next.set(h + 1);
        self.open.borrow_mut().insert(
            h,
            Open {
                path: path.to_string(),
                pos: 0,
                flags,
            },
        );
        Ok(h)
    }

    async fn read(&self, h: u64, len: u64) -> Result<Vec<u8>, u64> {
        self.latency().await;
        let mut open = self.open.borrow_mut();
        let f = open.get_mut(&h).ok_or(code::BAD_ID)?;
        if f.flags & file_flags::READ == 0 {
            return Err(code::BAD_ID);
        }
        let files = self.files.borrow();
        let data = files.get(&f.path).ok_or(code::IO)?;
        // At or past the end: nothing to read, and (as POSIX) the position does not move.
        if f.pos >= data.len() as u64 {
            return Ok(Vec::new());
        }
        let start = f.pos;
        let n = self.amount(len.min(data.len() as u64 - start));
        f.pos = start + n;
        Ok(data[start as usize..(start + n) as usize].to_vec())
    }

    async fn write(&self, h: u64, buf: &[u8]) -> Result<u64, u64> {
        self.latency().await;
        let mut open = self.open.borrow_mut();
        let f = open.get_mut(&h).ok_or(code::BAD_ID)?;
        if f.flags & file_flags::WRITE == 0 {
            return Err(code::BAD_ID);
        }
        let mut files = self.files.borrow_mut();
        let data = files.get_mut(&f.path).ok_or(code::IO)?;
        if f.flags & file_flags::APPEND != 0 {
            f.pos = data.len() as u64;
        }
        let n = self.amount(buf.len() as u64) as usize;
        let end = f.pos as usize + n;
        if data.len() < end {
            data.resize(end, 0);
        }
        data[f.pos as usize..end].copy_from_slice(&buf[..n]);
        f.pos = end as u64;
        Ok(n as u64)
    }

    async fn seek(&self, h: u64, offset: i64, whence: Whence) -> Result<u64, u64> {
        self.latency().await;
        let mut open = self.open.borrow_mut();
        let f = open.get_mut(&h).ok_or(code::BAD_ID)?;
        let len = self
            .files
            .borrow()
            .get(&f.path)
            .map_or(0, |d| d.len() as u64);
        let base = match whence {
            Whence::Start => 0,
            Whence::Current => f.pos,
            Whence::End => len,
        };
        let pos = base.checked_add_signed(offset).ok_or(code::INVALID)?;
        f.pos = pos;
        Ok(pos)
    }

    async fn close(&self, h: u64) {
        self.open.borrow_mut().remove(&h);
    }
}
