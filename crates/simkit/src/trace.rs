//! The trace: one stable, human-readable line per event, `t=<ns> <actor> <event> <details>`, and
//! a 64-bit hash over all events, the determinism fingerprint. Lines are built only when they are
//! kept (replay, snapshots, `--trace`); the hash never needs them.
//!
//! Hash encoding (fixed; the same on every machine and toolchain). The hash starts at the FNV-1a
//! 64-bit offset basis and takes 64-bit words, each through `mix`:
//! `h = (h ^ w) * 0x9e37_79b9_7f4a_7c15 (wrapping); h ^= h >> 32`. Byte strings enter as their
//! FNV-1a 64-bit hash. An event is:
//! - a text event (spawn, exit, notify, oracle lines, ...): the words `1`, time in ns, FNV-1a of
//!   the actor's name, of the event's name, and of its details as the line shows them;
//! - a memory event (a load, store, RMW, compare-exchange, plain read or write, fence, or store
//!   buffer drain): the words `2`, time in ns, the actor's index (`u32::MAX` for none), FNV-1a
//!   of its sub-actor label (0 for none), then `op | order << 8 | note << 16 | len << 32`, the
//!   address, and three op-specific values ([`MemEvent`]).

use std::fmt::Write as _;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
const MIX: u64 = 0x9e37_79b9_7f4a_7c15;

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

/// One word into the trace hash.
fn mix(h: u64, w: u64) -> u64 {
    let h = (h ^ w).wrapping_mul(MIX);
    h ^ (h >> 32)
}

/// FNV-1a over formatted text, without building the text.
struct FnvWriter(u64);

impl std::fmt::Write for FnvWriter {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0 = fnv1a(self.0, s.as_bytes());
        Ok(())
    }
}

/// FNV-1a of formatted text.
pub fn fnv1a_fmt(args: std::fmt::Arguments<'_>) -> u64 {
    let mut w = FnvWriter(FNV_OFFSET);
    let _ = w.write_fmt(args);
    w.0
}

/// A memory event's kind, as hashed (the `op` byte) and as its trace line names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum MemOp {
    Load = 1,
    Store = 2,
    Rmw = 3,
    Cas = 4,
    Read = 5,
    Write = 6,
    Fence = 7,
    Drain = 8,
}

impl MemOp {
    pub fn name(self) -> &'static str {
        match self {
            MemOp::Load => "load",
            MemOp::Store => "store",
            MemOp::Rmw => "rmw",
            MemOp::Cas => "cas",
            MemOp::Read => "read",
            MemOp::Write => "write",
            MemOp::Fence => "fence",
            MemOp::Drain => "drain",
        }
    }
}

/// A memory event as the hash takes it. `a`, `b`, `c` by op: load and store: the value; RMW:
/// the operation (`RmwOp` code), its operand, the old value; compare-exchange: expected, new,
/// old; read and write: FNV-1a of the bytes; drain: 1 when forced. `order` is the ordering's
/// code (`memory::order_code`; a compare-exchange's is success | failure << 4), `note` a load's
/// (1 forwarded from the store buffer, 2 stale).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemEvent {
    pub op: MemOp,
    pub order: u8,
    pub note: u8,
    pub len: u32,
    pub addr: u64,
    pub a: u64,
    pub b: u64,
    pub c: u64,
}

pub struct Trace {
    hash: u64,
    events: u64,
    lines: Option<Vec<String>>,
}

impl Trace {
    pub fn new(capture: bool) -> Self {
        Self {
            hash: FNV_OFFSET,
            events: 0,
            lines: capture.then(Vec::new),
        }
    }

    /// Whether lines are kept (then callers build them).
    pub fn capturing(&self) -> bool {
        self.lines.is_some()
    }

    /// Records one text event. `actor` must not contain spaces (names are checked at spawn).
    pub fn record(
        &mut self,
        now_ns: u64,
        actor: &str,
        event: &str,
        details: std::fmt::Arguments<'_>,
    ) {
        let details_hash = match details.as_str() {
            Some(s) => fnv1a_of(s.as_bytes()),
            None => fnv1a_fmt(details),
        };
        let mut h = mix(self.hash, 1);
        h = mix(h, now_ns);
        h = mix(h, fnv1a_of(actor.as_bytes()));
        h = mix(h, fnv1a_of(event.as_bytes()));
        self.hash = mix(h, details_hash);
        self.events += 1;
        if let Some(lines) = &mut self.lines {
            let mut line = format!("t={now_ns} {actor} {event}");
            let start = line.len();
            let _ = write!(line, " {details}");
            if line.len() == start + 1 {
                line.truncate(start);
            }
            lines.push(line);
        }
    }

    /// Records one memory event by actor index `actor` with sub-actor label hash `label` (see
    /// the encoding above). The caller adds its line with [`Trace::push_line`] when capturing.
    pub fn record_mem(&mut self, now_ns: u64, actor: u32, label: u64, e: &MemEvent) {
        let mut h = mix(self.hash, 2);
        h = mix(h, now_ns);
        h = mix(h, u64::from(actor));
        h = mix(h, label);
        h = mix(
            h,
            u64::from(e.op as u8)
                | u64::from(e.order) << 8
                | u64::from(e.note) << 16
                | u64::from(e.len) << 32,
        );
        h = mix(h, e.addr);
        h = mix(h, e.a);
        h = mix(h, e.b);
        self.hash = mix(h, e.c);
        self.events += 1;
    }

    /// Keeps a line built by the caller for the last memory event (when capturing).
    pub fn push_line(&mut self, line: String) {
        if let Some(lines) = &mut self.lines {
            lines.push(line);
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
        assert_eq!(t.events(), 2);
        // Keeping lines does not change the hash.
        let mut u = Trace::new(false);
        u.record(0, "kernel", "spawn", format_args!("actor=T{}", 1));
        u.record(50, "T1", "exit", format_args!(""));
        assert_eq!(t.hash(), u.hash());
        assert!(u.lines().is_none());
    }

    #[test]
    fn hash_encoding_is_fixed() {
        // The encoding is part of every recorded hash (replay files): it must not drift.
        let mut t = Trace::new(false);
        t.record(0, "kernel", "spawn", format_args!("T1"));
        t.record_mem(
            50,
            0,
            0,
            &MemEvent {
                op: MemOp::Store,
                order: 4,
                note: 0,
                len: 4,
                addr: 16,
                a: 7,
                b: 0,
                c: 0,
            },
        );
        assert_eq!(t.hash(), 0x3c52_5dfa_8ec7_0f9d);
    }

    #[test]
    fn fnv_known_vector() {
        // Published FNV-1a 64 test vector.
        assert_eq!(fnv1a_of(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
