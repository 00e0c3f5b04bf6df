//! A file store over a real host directory, for hardware runs: the guest's file pipes read and
//! write real files under one root directory, with the semantics the simulation's in-memory
//! store models (`scenarios::pipes::files::SimFiles`): POSIX-like open flags, a position per
//! handle, reads that return less (even nothing) at end of file, errno codes on the wire.
//!
//! The guest is hostile. A path must be relative and stay inside the root: absolute paths, `..`
//! and `.` components, empty components (`a//b`, a trailing `/`), NUL bytes and paths longer
//! than [`MAX_PATH`] are refused with `INVALID`, as is any symbolic link on the way (the guest
//! cannot create links; the check keeps a link someone else left from leading out of the root).
//! Only regular files are served. Writes stop at [`HostDir::max_len`] bytes into a file (a short
//! write, then `TOO_LARGE`, as `RLIMIT_FSIZE` does), so a seek far out cannot grow a huge file.
//!
//! The calls are plain blocking `std::fs` calls. The monitor runs on a tokio current-thread
//! runtime, so each call holds up the other relays for as long as it takes; the files are small
//! and local (a few hundred bytes per request), a call takes microseconds, and keeping them
//! synchronous keeps each request's effect in the order the relay made it. A store serving large
//! or slow files would move them to `spawn_blocking`.

use crate::FileStore;
use ring_pipe::msg::{Whence, code, file_flags};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Longest relative path accepted (as the simulated store).
pub const MAX_PATH: usize = 255;
/// Most bytes one read returns (the relay asks for less).
pub const MAX_READ: u64 = 1 << 20;
/// Default cap on a file's length.
pub const DEFAULT_MAX_LEN: u64 = 64 << 20;

struct Open {
    file: File,
    flags: u64,
}

/// Files under `root`, served to the guest.
pub struct HostDir {
    root: PathBuf,
    max_len: u64,
    open: RefCell<BTreeMap<u64, Open>>,
    next: Cell<u64>,
}

/// Checks a guest path against the rules in the module docs; `Err` carries the wire code.
pub fn check_path(path: &str) -> Result<(), u64> {
    if path.is_empty()
        || path.len() > MAX_PATH
        || path.contains('\0')
        || path.starts_with('/')
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(code::INVALID);
    }
    Ok(())
}

/// The wire code for an I/O error.
pub fn error_code(e: &io::Error) -> u64 {
    use io::ErrorKind as K;
    match e.kind() {
        K::NotFound => code::NOT_FOUND,
        K::AlreadyExists => code::EXISTS,
        K::InvalidInput | K::InvalidFilename | K::IsADirectory | K::NotADirectory => code::INVALID,
        K::FileTooLarge => code::TOO_LARGE,
        K::StorageFull | K::QuotaExceeded => code::NO_SPACE,
        _ => code::IO,
    }
}

impl HostDir {
    /// Serves the existing directory `root`.
    pub fn new(root: impl AsRef<Path>) -> io::Result<Self> {
        let root = root.as_ref().canonicalize()?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", root.display()),
            ));
        }
        Ok(Self {
            root,
            max_len: DEFAULT_MAX_LEN,
            open: RefCell::default(),
            next: Cell::new(1),
        })
    }

    /// Caps every file's length at `max_len` bytes.
    pub fn with_max_len(mut self, max_len: u64) -> Self {
        self.max_len = max_len;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn max_len(&self) -> u64 {
        self.max_len
    }

    /// Handles the guest has open.
    pub fn open_handles(&self) -> usize {
        self.open.borrow().len()
    }

    /// Where a guest path lives on the host, if it obeys the rules and no symbolic link lies on
    /// the way to it.
    pub fn resolve(&self, path: &str) -> Result<PathBuf, u64> {
        check_path(path)?;
        let mut at = self.root.clone();
        for part in path.split('/') {
            at.push(part);
            match at.symlink_metadata() {
                Ok(m) if m.file_type().is_symlink() => return Err(code::INVALID),
                Ok(_) => {}
                // Nothing further down exists either; open decides what that means.
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) => return Err(error_code(&e)),
            }
        }
        Ok(self.root.join(path))
    }

    fn open_file(&self, path: &str, flags: u64) -> Result<u64, u64> {
        if flags & !file_flags::ALL != 0 {
            return Err(code::INVALID);
        }
        let at = self.resolve(path)?;
        // The host opens for writing whenever the flags change the file (creating or truncating
        // needs write access); what the guest may do with the handle is its own flags, checked
        // per request. APPEND is applied per write, so it combines with TRUNCATE as in POSIX.
        let changes = file_flags::WRITE | file_flags::CREATE | file_flags::TRUNCATE;
        let write = flags & changes != 0;
        let file = OpenOptions::new()
            .read(flags & file_flags::READ != 0 || !write)
            .write(write)
            .create(flags & file_flags::CREATE != 0)
            .truncate(flags & file_flags::TRUNCATE != 0)
            .open(&at)
            .map_err(|e| error_code(&e))?;
        if !file.metadata().map_err(|e| error_code(&e))?.is_file() {
            return Err(code::INVALID);
        }
        let h = self.next.get();
        self.next.set(h + 1);
        self.open.borrow_mut().insert(h, Open { file, flags });
        Ok(h)
    }

    fn read_file(&self, h: u64, len: u64) -> Result<Vec<u8>, u64> {
        let mut open = self.open.borrow_mut();
        let f = open.get_mut(&h).ok_or(code::BAD_ID)?;
        if f.flags & file_flags::READ == 0 {
            return Err(code::BAD_ID);
        }
        let mut buf = vec![0u8; len.min(MAX_READ) as usize];
        let n = retry(|| f.file.read(&mut buf))?;
        buf.truncate(n);
        Ok(buf)
    }

    fn write_file(&self, h: u64, data: &[u8]) -> Result<u64, u64> {
        let mut open = self.open.borrow_mut();
        let f = open.get_mut(&h).ok_or(code::BAD_ID)?;
        if f.flags & file_flags::WRITE == 0 {
            return Err(code::BAD_ID);
        }
        let pos = if f.flags & file_flags::APPEND != 0 {
            retry(|| f.file.seek(SeekFrom::End(0)))?
        } else {
            retry(|| f.file.stream_position())?
        };
        if data.is_empty() {
            return Ok(0);
        }
        let room = self.max_len.saturating_sub(pos);
        if room == 0 {
            return Err(code::TOO_LARGE);
        }
        let n = data.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let wrote = retry(|| f.file.write(&data[..n]))?;
        Ok(wrote as u64)
    }

    fn seek_file(&self, h: u64, offset: i64, whence: Whence) -> Result<u64, u64> {
        let mut open = self.open.borrow_mut();
        let f = open.get_mut(&h).ok_or(code::BAD_ID)?;
        let to = match whence {
            Whence::Start => SeekFrom::Start(u64::try_from(offset).map_err(|_| code::INVALID)?),
            Whence::Current => SeekFrom::Current(offset),
            Whence::End => SeekFrom::End(offset),
        };
        retry(|| f.file.seek(to))
    }
}

/// Runs `op` again while it is interrupted by a signal; other errors become wire codes.
fn retry<T>(mut op: impl FnMut() -> io::Result<T>) -> Result<T, u64> {
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r.map_err(|e| error_code(&e)),
        }
    }
}

impl FileStore for HostDir {
    type Handle = u64;

    async fn open(&self, path: &str, flags: u64) -> Result<u64, u64> {
        self.open_file(path, flags)
    }

    async fn read(&self, h: u64, len: u64) -> Result<Vec<u8>, u64> {
        self.read_file(h, len)
    }

    async fn write(&self, h: u64, data: &[u8]) -> Result<u64, u64> {
        self.write_file(h, data)
    }

    async fn seek(&self, h: u64, offset: i64, whence: Whence) -> Result<u64, u64> {
        self.seek_file(h, offset, whence)
    }

    async fn close(&self, h: u64) {
        self.open.borrow_mut().remove(&h);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::task::{Context, Poll, Waker};

    /// The store never waits, so one poll finishes every call.
    fn now<F: Future>(f: F) -> F::Output {
        match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("a host file call waited"),
        }
    }

    /// A fresh directory, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Self {
            static N: AtomicU64 = AtomicU64::new(0);
            let dir = std::env::temp_dir().join(format!(
                "monitor-host-files-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const RW_NEW: u64 =
        file_flags::READ | file_flags::WRITE | file_flags::CREATE | file_flags::TRUNCATE;

    #[test]
    fn paths_must_stay_inside_the_root() {
        for bad in [
            "",
            "/etc/passwd",
            "..",
            "../x",
            "a/../../x",
            "a/..",
            "./x",
            "a/./b",
            "a//b",
            "a/",
            "/",
            "nul\0byte",
        ] {
            assert_eq!(check_path(bad), Err(code::INVALID), "{bad:?}");
        }
        assert_eq!(check_path(&"a".repeat(MAX_PATH + 1)), Err(code::INVALID));
        for good in ["x", "data/file0.bin", "a/b/c", "..x", "x..", ".hidden"] {
            assert_eq!(check_path(good), Ok(()), "{good:?}");
        }
        assert_eq!(check_path(&"a".repeat(MAX_PATH)), Ok(()));
    }

    #[test]
    fn refused_paths_touch_nothing() {
        let s = Scratch::new();
        let dir = HostDir::new(&s.0).unwrap();
        let outside = format!("../{}-escaped", s.0.file_name().unwrap().to_string_lossy());
        assert_eq!(now(dir.open(&outside, RW_NEW)), Err(code::INVALID));
        assert!(!s.0.parent().unwrap().join(&outside[3..]).exists());
        assert_eq!(now(dir.open("/tmp/x", RW_NEW)), Err(code::INVALID));
        assert_eq!(dir.open_handles(), 0);
    }

    #[test]
    fn symbolic_links_are_refused() {
        let s = Scratch::new();
        let target = Scratch::new();
        std::os::unix::fs::symlink(&target.0, s.0.join("link")).unwrap();
        std::fs::write(target.0.join("f"), b"secret").unwrap();
        std::os::unix::fs::symlink(target.0.join("f"), s.0.join("flink")).unwrap();
        let dir = HostDir::new(&s.0).unwrap();
        assert_eq!(
            now(dir.open("link/f", file_flags::READ)),
            Err(code::INVALID)
        );
        assert_eq!(now(dir.open("flink", file_flags::READ)), Err(code::INVALID));
    }

    #[test]
    fn open_write_seek_read_close() {
        let s = Scratch::new();
        std::fs::create_dir(s.0.join("data")).unwrap();
        let dir = HostDir::new(&s.0).unwrap();
        let h = now(dir.open("data/f.bin", RW_NEW)).unwrap();
        assert_eq!(now(dir.write(h, b"hello world")), Ok(11));
        assert_eq!(now(dir.seek(h, 6, Whence::Start)), Ok(6));
        assert_eq!(now(dir.read(h, 100)), Ok(b"world".to_vec()));
        // At the end: nothing, and the position stays.
        assert_eq!(now(dir.read(h, 100)), Ok(Vec::new()));
        assert_eq!(now(dir.seek(h, 0, Whence::Current)), Ok(11));
        // Past the end: the gap reads as zeros.
        assert_eq!(now(dir.seek(h, 13, Whence::Start)), Ok(13));
        assert_eq!(now(dir.write(h, b"!")), Ok(1));
        assert_eq!(now(dir.seek(h, -3, Whence::End)), Ok(11));
        assert_eq!(now(dir.read(h, 2)), Ok(vec![0, 0]));
        assert_eq!(now(dir.seek(h, -1, Whence::Start)), Err(code::INVALID));
        assert_eq!(now(dir.seek(h, -100, Whence::Current)), Err(code::INVALID));
        now(dir.close(h));
        assert_eq!(dir.open_handles(), 0);
        assert_eq!(now(dir.read(h, 1)), Err(code::BAD_ID));
        assert_eq!(
            std::fs::read(s.0.join("data/f.bin")).unwrap(),
            b"hello world\0\0!"
        );
    }

    #[test]
    fn flags_are_honoured() {
        let s = Scratch::new();
        let dir = HostDir::new(&s.0).unwrap();
        assert_eq!(
            now(dir.open("missing", file_flags::READ)),
            Err(code::NOT_FOUND)
        );
        assert_eq!(
            now(dir.open("nodir/f", RW_NEW)),
            Err(code::NOT_FOUND),
            "CREATE makes no directories"
        );
        assert!(!s.0.join("nodir").exists());
        assert_eq!(now(dir.open("f", 1 << 9)), Err(code::INVALID));

        let w = now(dir.open("f", file_flags::WRITE | file_flags::CREATE)).unwrap();
        assert_eq!(now(dir.write(w, b"abcdef")), Ok(6));
        assert_eq!(now(dir.read(w, 1)), Err(code::BAD_ID), "not opened READ");

        let r = now(dir.open("f", file_flags::READ)).unwrap();
        assert_eq!(
            now(dir.write(r, b"x")),
            Err(code::BAD_ID),
            "not opened WRITE"
        );
        assert_eq!(now(dir.read(r, 3)), Ok(b"abc".to_vec()));

        let a = now(dir.open("f", file_flags::WRITE | file_flags::APPEND)).unwrap();
        assert_eq!(now(dir.seek(a, 0, Whence::Start)), Ok(0));
        assert_eq!(now(dir.write(a, b"gh")), Ok(2));
        assert_eq!(std::fs::read(s.0.join("f")).unwrap(), b"abcdefgh");

        let t = now(dir.open("f", file_flags::WRITE | file_flags::TRUNCATE)).unwrap();
        assert_eq!(std::fs::read(s.0.join("f")).unwrap(), b"");
        for h in [w, r, a, t] {
            now(dir.close(h));
        }
        // A directory is not a file.
        std::fs::create_dir(s.0.join("d")).unwrap();
        assert_eq!(now(dir.open("d", file_flags::READ)), Err(code::INVALID));
        assert_eq!(dir.open_handles(), 0);
    }

    #[test]
    fn writes_stop_at_the_length_cap() {
        let s = Scratch::new();
        let dir = HostDir::new(&s.0).unwrap().with_max_len(10);
        let h = now(dir.open("f", RW_NEW)).unwrap();
        assert_eq!(now(dir.seek(h, 8, Whence::Start)), Ok(8));
        assert_eq!(
            now(dir.write(h, b"abcd")),
            Ok(2),
            "short write up to the cap"
        );
        assert_eq!(now(dir.write(h, b"cd")), Err(code::TOO_LARGE));
        assert_eq!(now(dir.seek(h, 1 << 40, Whence::Start)), Ok(1 << 40));
        assert_eq!(now(dir.write(h, b"x")), Err(code::TOO_LARGE));
        assert_eq!(std::fs::metadata(s.0.join("f")).unwrap().len(), 10);
    }

    #[test]
    fn io_errors_map_to_wire_codes() {
        use io::ErrorKind as K;
        for (kind, want) in [
            (K::NotFound, code::NOT_FOUND),
            (K::AlreadyExists, code::EXISTS),
            (K::InvalidInput, code::INVALID),
            (K::FileTooLarge, code::TOO_LARGE),
            (K::StorageFull, code::NO_SPACE),
            (K::PermissionDenied, code::IO),
            (K::Other, code::IO),
        ] {
            assert_eq!(error_code(&io::Error::from(kind)), want, "{kind:?}");
        }
    }
}
