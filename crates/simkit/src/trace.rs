//! The trace: one stable, human-readable line per event, `t=<ns> <actor> <event> <details>`, and
//! a 64-bit FNV-1a hash over all lines (each followed by `\n`). The hash is the determinism
//! fingerprint; the lines are kept only when asked for (replay, snapshots, `--trace`), so sweeps
//! pay for formatting and hashing but not for storage.

use std::fmt::Write as _;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64 bit. Stable across machines and toolchains (unlike `DefaultHasher`).
pub fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(hash, |h, b| (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME))
}

/// FNV-1a of a byte string from the standard offset basis.
pub fn fnv1a_of(bytes: &[u8]) -> u64 {
    fnv1a(FNV_OFFSET, bytes)
}

pub struct Trace {
    hash: u64,
    events: u64,
    lines: Option<Vec<String>>,
    line: String,
}

impl Trace {
    pub fn new(capture: bool) -> Self {
        Self {
            hash: FNV_OFFSET,
            events: 0,
            lines: capture.then(Vec::new),
            line: String::new(),
        }
    }

    /// Records one event. `actor` must not contain spaces (names are checked at spawn).
    pub fn record(
        &mut self,
        now_ns: u64,
        actor: &str,
        event: &str,
        details: std::fmt::Arguments<'_>,
    ) {
        self.line.clear();
        // Writing into a String cannot fail.
        let _ = write!(self.line, "t={now_ns} {actor} {event}");
        let start = self.line.len();
        let _ = write!(self.line, " {details}");
        if self.line.len() == start + 1 {
            self.line.truncate(start);
        }
        self.hash = fnv1a(self.hash, self.line.as_bytes());
        self.hash = fnv1a(self.hash, b"\n");
        self.events += 1;
        if let Some(lines) = &mut self.lines {
            lines.push(self.line.clone());
        }
    }

    pub fn hash(&self) -> u64 {
        self.hash
    }

    pub fn events(&self) -> u64 {
        self.events
    }

    pub fn lines(&self) -> Option<&[String]> {
        self.lines.as_deref()
    }

    pub fn take_lines(&mut self) -> Option<Vec<String>> {
        self.lines.take()
    }
}

/// The hash a list of trace lines would have; lets a checker recompute a recorded hash from the
/// lines alone.
pub fn hash_lines<S: AsRef<str>>(lines: &[S]) -> u64 {
    lines.iter().fold(FNV_OFFSET, |h, l| {
        fnv1a(fnv1a(h, l.as_ref().as_bytes()), b"\n")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_format_and_hash() {
        let mut t = Trace::new(true);
        t.record(0, "kernel", "spawn", format_args!("actor=T1"));
        t.record(50, "T1", "exit", format_args!(""));
        let lines = t.lines().expect("captured").to_vec();
        assert_eq!(
            lines,
            vec![
                "t=0 kernel spawn actor=T1".to_string(),
                "t=50 T1 exit".to_string()
            ]
        );
        assert_eq!(t.hash(), hash_lines(&lines));
        assert_eq!(t.events(), 2);
    }

    #[test]
    fn fnv_known_vector() {
        // Published FNV-1a 64 test vector.
        assert_eq!(fnv1a_of(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
