//! The per-instance state of the WASI layer: which of the standard streams are still open, and
//! the unfinished line each output stream holds. Output is cut into lines so that one line of a
//! cell's output is one log event, however many `fd_write` calls wrote it (Go's runtime writes
//! a panic message a few bytes at a time).

use std::collections::BTreeMap;

/// Standard input, output and error.
pub const STDIN: u32 = 0;
pub const STDOUT: u32 = 1;
pub const STDERR: u32 = 2;

/// A line longer than this is emitted in pieces of this size.
pub const MAX_LINE: usize = 4096;

/// What an open descriptor is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdin,
    Stdout,
    Stderr,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WasiState {
    /// Open descriptors: the standard streams until the cell closes or renumbers them. There
    /// are no preopened directories, so nothing else is ever open.
    open: BTreeMap<u32, Stream>,
    /// The unfinished line of stdout (index 0) and stderr (index 1).
    pending: [Vec<u8>; 2],
    /// Where the monotonic clock stood when start-up ended: the host's time is added to it,
    /// so the clock never runs backwards from start-up into the cell's life (Go's runtime
    /// also refuses a monotonic clock that reads 0).
    pub mono_base: u64,
}

impl Default for WasiState {
    fn default() -> Self {
        Self {
            open: [
                (STDIN, Stream::Stdin),
                (STDOUT, Stream::Stdout),
                (STDERR, Stream::Stderr),
            ]
            .into_iter()
            .collect(),
            pending: [Vec::new(), Vec::new()],
            mono_base: 0,
        }
    }
}

impl WasiState {
    pub fn stream(&self, fd: u32) -> Option<Stream> {
        self.open.get(&fd).copied()
    }

    pub fn is_open(&self, fd: u32) -> bool {
        self.open.contains_key(&fd)
    }

    pub fn close(&mut self, fd: u32) -> bool {
        self.open.remove(&fd).is_some()
    }

    /// Moves descriptor `from` to `to` (closing what was at `to`); false unless both are open.
    pub fn renumber(&mut self, from: u32, to: u32) -> bool {
        if !self.is_open(from) || !self.is_open(to) {
            return false;
        }
        if let Some(stream) = self.open.remove(&from) {
            self.open.insert(to, stream);
        }
        true
    }

    /// Appends output to an output stream; returns the lines it completed.
    pub fn write(&mut self, stream: Stream, bytes: &[u8]) -> Vec<String> {
        let buf = &mut self.pending[usize::from(stream == Stream::Stderr)];
        let mut lines = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                lines.push(String::from_utf8_lossy(buf).into_owned());
                buf.clear();
            } else {
                buf.push(b);
                if buf.len() >= MAX_LINE {
                    lines.push(String::from_utf8_lossy(buf).into_owned());
                    buf.clear();
                }
            }
        }
        lines
    }

    /// The unfinished lines of both streams, as (fd, line); leaves them empty.
    pub fn flush(&mut self) -> Vec<(u32, String)> {
        let mut out = Vec::new();
        for (fd, buf) in [STDOUT, STDERR].into_iter().zip(self.pending.iter_mut()) {
            if !buf.is_empty() {
                out.push((fd, String::from_utf8_lossy(buf).into_owned()));
                buf.clear();
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_cut_into_lines() {
        let mut s = WasiState::default();
        assert!(s.write(Stream::Stderr, b"panic: ").is_empty());
        assert_eq!(
            s.write(Stream::Stderr, b"boom\n\ngoroutine"),
            vec!["panic: boom", ""]
        );
        assert_eq!(s.write(Stream::Stdout, b"x\n"), vec!["x"]);
        assert_eq!(s.flush(), vec![(STDERR, "goroutine".to_string())]);
        assert!(s.flush().is_empty());
        let long = vec![b'a'; MAX_LINE + 1];
        assert_eq!(s.write(Stream::Stdout, &long).len(), 1);
    }

    #[test]
    fn descriptors_close_once() {
        let mut s = WasiState::default();
        assert!(s.close(STDIN));
        assert!(!s.close(STDIN));
        assert!(!s.renumber(STDIN, STDOUT));
        assert!(s.renumber(STDERR, STDOUT));
        assert!(!s.is_open(STDERR));
        assert_eq!(s.stream(STDOUT), Some(Stream::Stderr));
    }
}
