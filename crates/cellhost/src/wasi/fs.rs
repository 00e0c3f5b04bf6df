//! Descriptor, path and socket functions, answered as a WASI host with the three standard
//! streams and no preopened directories answers them: stdin reads as empty, stdout and stderr
//! take writes, and everything else is a typed errno (`EBADF` for a descriptor that is not
//! open, `ENOTDIR` for a path relative to a stream, `ESPIPE` for seeking one).

use super::state::Stream;
use super::{WasiCtx, arg32, errno, fits, put, read_u32};
use crate::engine::{GuestMemory, HostOutcome};

/// `filetype`: the standard streams are character devices.
const CHARACTER_DEVICE: u8 = 2;

/// Rights (`rights` flags) of the standard streams.
const RIGHT_FD_READ: u64 = 1 << 1;
const RIGHT_FD_WRITE: u64 = 1 << 6;
const RIGHT_FD_FILESTAT_GET: u64 = 1 << 21;
const RIGHT_POLL_FD_READWRITE: u64 = 1 << 27;

/// `fdflags` a descriptor cannot take here.
const FDFLAGS_SYNC: u32 = (1 << 1) | (1 << 3) | (1 << 4);

/// Most one `fd_write` takes; Go's writers loop over a short write.
const MAX_WRITE: u64 = 1 << 20;

/// Answers for an open descriptor, else `EBADF`.
fn if_open(ctx: &WasiCtx, fd: u32, open: i64) -> HostOutcome {
    if ctx.state.borrow().is_open(fd) {
        errno(open)
    } else {
        errno(errno::BADF)
    }
}

pub(super) fn fd_close(ctx: &WasiCtx, _: &mut dyn GuestMemory, a: &[i64]) -> HostOutcome {
    if ctx.state.borrow_mut().close(arg32(a, 0)) {
        errno(errno::SUCCESS)
    } else {
        errno(errno::BADF)
    }
}

pub(super) fn fd_renumber(ctx: &WasiCtx, _: &mut dyn GuestMemory, a: &[i64]) -> HostOutcome {
    if ctx.state.borrow_mut().renumber(arg32(a, 0), arg32(a, 1)) {
        errno(errno::SUCCESS)
    } else {
        errno(errno::BADF)
    }
}

fn rights(stream: Stream) -> u64 {
    let io = match stream {
        Stream::Stdin => RIGHT_FD_READ,
        Stream::Stdout | Stream::Stderr => RIGHT_FD_WRITE,
    };
    io | RIGHT_FD_FILESTAT_GET | RIGHT_POLL_FD_READWRITE
}

/// `(fd, fdstat_ptr)`: a character device, no flags, its rights.
pub(super) fn fd_fdstat_get(ctx: &WasiCtx, mem: &mut dyn GuestMemory, a: &[i64]) -> HostOutcome {
    let (fd, out) = (arg32(a, 0), arg32(a, 1));
    if !fits(mem, out, 24) {
        return errno(errno::FAULT);
    }
    let Some(stream) = ctx.state.borrow().stream(fd) else {
        return errno(errno::BADF);
    };
    let mut stat = [0u8; 24];
    stat[0] = CHARACTER_DEVICE;
    stat[8..16].copy_from_slice(&rights(stream).to_le_bytes());
    put(mem, out, &stat)
}

/// `(fd, flags)`: synchronous-I/O flags are `EINVAL`; the streams' flags cannot change
/// (`ENOSYS`, as Pulp's host answers for its streams).
pub(super) fn fd_fdstat_set_flags(
    ctx: &WasiCtx,
    _: &mut dyn GuestMemory,
    a: &[i64],
) -> HostOutcome {
    if arg32(a, 1) & FDFLAGS_SYNC != 0 {
        return errno(errno::INVAL);
    }
    if_open(ctx, arg32(a, 0), errno::NOSYS)
}

/// `(fd, filestat_ptr)`: a character device of size 0, all times 0.
pub(super) fn fd_filestat_get(ctx: &WasiCtx, mem: &mut dyn GuestMemory, a: &[i64]) -> HostOutcome {
    let (fd, out) = (arg32(a, 0), arg32(a, 1));
    if !fits(mem, out, 64) {
        return errno(errno::FAULT);
    }
    if !ctx.state.borrow().is_open(fd) {
        return errno(errno::BADF);
    }
    let mut stat = [0u8; 64];
    stat[16] = CHARACTER_DEVICE;
    stat[24..32].copy_from_slice(&1u64.to_le_bytes());
    put(mem, out, &stat)
}

/// The (ptr, len) pairs of an iovec array.
fn iovecs(mem: &dyn GuestMemory, iovs: u32, count: u32) -> Option<Vec<(u32, u32)>> {
    if !fits(mem, iovs, u64::from(count) * 8) {
        return None;
    }
    (0..count)
        .map(|i| {
            let at = iovs + i * 8;
            Some((read_u32(mem, at)?, read_u32(mem, at + 4)?))
        })
        .collect()
}

/// `(fd, iovs, iovs_len, nread_ptr)`: stdin is empty (end of file at once).
pub(super) fn fd_read(ctx: &WasiCtx, mem: &mut dyn GuestMemory, a: &[i64]) -> HostOutcome {
    let (fd, iovs, count, nread) = (arg32(a, 0), arg32(a, 1), arg32(a, 2), arg32(a, 3));
    match ctx.state.borrow().stream(fd) {
        Some(Stream::Stdin) => {}
        _ => return errno(errno::BADF),
    }
    let Some(list) = iovecs(mem, iovs, count) else {
        return errno(errno::FAULT);
    };
    if list.iter().any(|&(p, l)| !fits(mem, p, u64::from(l))) {
        return errno(errno::FAULT);
    }
    put(mem, nread, &0u32.to_le_bytes())
}

/// `(fd, iovs, iovs_len, nwritten_ptr)`: stdout and stderr, cut into lines for the log.
pub(super) fn fd_write(ctx: &WasiCtx, mem: &mut dyn GuestMemory, a: &[i64]) -> HostOutcome {
    let (fd, iovs, count, nwritten) = (arg32(a, 0), arg32(a, 1), arg32(a, 2), arg32(a, 3));
    let stream = match ctx.state.borrow().stream(fd) {
        Some(s @ (Stream::Stdout | Stream::Stderr)) => s,
        _ => return errno(errno::BADF),
    };
    let Some(list) = iovecs(mem, iovs, count) else {
        return errno(errno::FAULT);
    };
    let mut bytes = Vec::new();
    for (ptr, len) in list {
        let room = MAX_WRITE - bytes.len() as u64;
        let take = u64::from(len).min(room) as u32;
        match mem.read(ptr, take) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(_) => return errno(errno::FAULT),
        }
        if bytes.len() as u64 == MAX_WRITE {
            break;
        }
    }
    if !fits(mem, nwritten, 4) {
        return errno(errno::FAULT);
    }
    ctx.write_stream(stream, &bytes);
    put(mem, nwritten, &(bytes.len() as u32).to_le_bytes())
}

/// Seeking and positional I/O on a stream: `ESPIPE`.
pub(super) fn no_seek(ctx: &WasiCtx, _: &mut dyn GuestMemory, a: &[i64]) -> HostOutcome {
    if_open(ctx, arg32(a, 0), errno::SPIPE)
}

/// Syncing, resizing or stamping a stream: `ENOTSUP`.
pub(super) fn not_supported(ctx: &WasiCtx, _: &mut dyn GuestMemory, a: &[i64]) -> HostOutcome {
    if_open(ctx, arg32(a, 0), errno::NOTSUP)
}

/// Functions this host does not provide at all (`fd_fdstat_set_rights`, `proc_raise`), as
/// wazero answers them.
pub(super) fn no_system(_: &WasiCtx, _: &mut dyn GuestMemory, _: &[i64]) -> HostOutcome {
    errno(errno::NOSYS)
}

/// No descriptor is a preopened directory.
pub(super) fn no_preopen(_: &WasiCtx, _: &mut dyn GuestMemory, _: &[i64]) -> HostOutcome {
    errno(errno::BADF)
}

/// A path call (or `fd_readdir`) relative to descriptor 0: a stream is not a directory.
pub(super) fn not_a_directory(ctx: &WasiCtx, _: &mut dyn GuestMemory, a: &[i64]) -> HostOutcome {
    if_open(ctx, arg32(a, 0), errno::NOTDIR)
}

/// `path_symlink(old_path, old_len, fd, new_path, new_len)`: the directory is argument 2.
pub(super) fn path_symlink(ctx: &WasiCtx, _: &mut dyn GuestMemory, a: &[i64]) -> HostOutcome {
    if_open(ctx, arg32(a, 2), errno::NOTDIR)
}

pub(super) fn not_a_socket(ctx: &WasiCtx, _: &mut dyn GuestMemory, a: &[i64]) -> HostOutcome {
    if_open(ctx, arg32(a, 0), errno::NOTSOCK)
}
