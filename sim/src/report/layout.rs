//! A run's trace turned into a picture's parts: lanes (one per actor or component lane, in the
//! order they appear, sub-actors beside their parent), events placed on a virtual-time axis, and
//! links between events. Catalogue-generic: it reads only the trace line format
//! (`t=<ns> <actor> <event> <details>`) and the link tokens components write into details:
//! `send=K` on a sending event and `recv=K` on each receiving one (a message, a doorbell, an
//! interrupt, a sibling call, an RPC delivery) and `by=K` on an event a delivery `K` caused
//! (a wake-up).

use std::collections::BTreeMap;

pub struct Event<'a> {
    /// Index of the line in the trace (0-based).
    pub index: usize,
    pub time: u64,
    pub lane: usize,
    pub kind: &'a str,
    pub line: &'a str,
    pub x: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LinkKind {
    Message,
    Doorbell,
    Interrupt,
    Call,
    Rpc,
    Wake,
}

impl LinkKind {
    pub fn class(self) -> &'static str {
        match self {
            LinkKind::Message => "message",
            LinkKind::Doorbell => "doorbell",
            LinkKind::Interrupt => "interrupt",
            LinkKind::Call => "call",
            LinkKind::Rpc => "rpc",
            LinkKind::Wake => "wake",
        }
    }

    fn of_key(key: &str) -> Self {
        if key.starts_with("irq") {
            LinkKind::Interrupt
        } else if key.starts_with("db") {
            LinkKind::Doorbell
        } else if key.starts_with("call") || key.starts_with("ret") {
            LinkKind::Call
        } else if key.starts_with('m') && key.contains('#') {
            LinkKind::Rpc
        } else {
            LinkKind::Message
        }
    }
}

pub struct Link {
    /// Positions in `Layout::events`.
    pub from: usize,
    pub to: usize,
    pub kind: LinkKind,
    pub key: String,
}

pub struct Layout<'a> {
    pub lanes: Vec<String>,
    pub events: Vec<Event<'a>>,
    pub links: Vec<Link>,
    /// Sends that no event received (a message lost with its connection, a call that never
    /// got in): positions in `events`, with their kind and key.
    pub undelivered: Vec<(usize, LinkKind, String)>,
    pub width: f64,
    /// The first and one-past-last trace line drawn (a long trace is drawn in a window).
    pub window: (usize, usize),
    pub total_lines: usize,
}

/// A parsed line: time, actor, event kind.
pub fn parse(line: &str) -> Option<(u64, &str, &str)> {
    let mut w = line.splitn(4, ' ');
    let t = w.next()?.strip_prefix("t=")?.parse().ok()?;
    Some((t, w.next()?, w.next()?))
}

/// The family an actor's lane sits with: `vcpu0/recv3` and `vcpu0.sb` beside `vcpu0`.
fn family(actor: &str) -> &str {
    let base = actor.split('/').next().unwrap_or(actor);
    base.strip_suffix(".sb").unwrap_or(base)
}

fn tokens<'a>(line: &'a str, key: &str) -> impl Iterator<Item = &'a str> {
    let prefix = format!("{key}=");
    line.split(' ')
        .filter_map(move |w| w.strip_prefix(prefix.as_str()))
        .filter(|k| !k.is_empty())
}

/// Horizontal room an event takes after the previous one: a minimum, plus a log of the virtual
/// time between them, so a 50 ns step and a 50 µs interrupt latency both stay readable.
fn gap(dt: u64) -> f64 {
    7.0 + 14.0 * (1.0 + dt as f64 / 50.0).log10()
}

/// Lays out `lines[window]`.
pub fn layout<'a>(lines: &'a [String], window: (usize, usize)) -> Layout<'a> {
    let (lo, hi) = (window.0.min(lines.len()), window.1.min(lines.len()));
    // Lanes: families in order of first appearance, members in order of first appearance.
    let mut families: Vec<&str> = Vec::new();
    let mut members: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for line in &lines[lo..hi] {
        if let Some((_, actor, _)) = parse(line) {
            let fam = family(actor);
            if !families.contains(&fam) {
                families.push(fam);
            }
            let m = members.entry(fam).or_default();
            if !m.contains(&actor) {
                m.push(actor);
            }
        }
    }
    let mut lanes: Vec<String> = Vec::new();
    for fam in &families {
        let mut m = members.remove(fam).unwrap_or_default();
        // The parent lane first, then its sub-actors, then its store buffer.
        m.sort_by_key(|a| (a != fam, a.ends_with(".sb")));
        lanes.extend(m.iter().map(|a| a.to_string()));
    }
    let lane_of: BTreeMap<&str, usize> = lanes
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    let mut events = Vec::new();
    let (mut x, mut prev) = (40.0, None);
    for (index, line) in lines.iter().enumerate().take(hi).skip(lo) {
        let Some((time, actor, kind)) = parse(line) else {
            continue;
        };
        if let Some(p) = prev {
            x += gap(time.saturating_sub(p));
        }
        prev = Some(time);
        events.push(Event {
            index,
            time,
            lane: lane_of.get(actor).copied().unwrap_or(0),
            kind,
            line,
            x,
        });
    }
    // Links: send -> every recv of the key; the delivery (recv) -> every event it caused (by).
    let mut senders: BTreeMap<&str, usize> = BTreeMap::new();
    let mut receivers: BTreeMap<&str, usize> = BTreeMap::new();
    let mut received: std::collections::BTreeSet<&str> = Default::default();
    let mut links = Vec::new();
    for (pos, e) in events.iter().enumerate() {
        for k in tokens(e.line, "send") {
            senders.insert(k, pos);
        }
        for k in tokens(e.line, "recv") {
            received.insert(k);
            if let Some(&from) = senders.get(k) {
                links.push(Link {
                    from,
                    to: pos,
                    kind: LinkKind::of_key(k),
                    key: k.to_string(),
                });
            }
            receivers.insert(k, pos);
        }
        for k in tokens(e.line, "by") {
            if let Some(&from) = receivers.get(k) {
                links.push(Link {
                    from,
                    to: pos,
                    kind: LinkKind::Wake,
                    key: k.to_string(),
                });
            }
        }
    }
    let undelivered = senders
        .iter()
        .filter(|(k, _)| !received.contains(*k))
        .map(|(k, &pos)| (pos, LinkKind::of_key(k), k.to_string()))
        .collect();
    Layout {
        lanes,
        undelivered,
        // Room after the last event for the labels of violation marks there.
        width: x + 280.0,
        events,
        links,
        window: (lo, hi),
        total_lines: lines.len(),
    }
}

/// The lines to draw of a trace of `n` lines: all of them up to `max`, else a window that
/// holds `focus` (the first violation's line), mostly what led to it.
pub fn window(n: usize, max: usize, focus: Option<usize>) -> (usize, usize) {
    if n <= max {
        return (0, n);
    }
    let focus = focus.unwrap_or(n - 1).min(n - 1);
    let after = max / 5;
    let hi = (focus + 1 + after).min(n);
    let lo = hi.saturating_sub(max);
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_links_and_windows() {
        let lines: Vec<String> = [
            "t=0 kernel spawn producer",
            "t=50 producer irq irq1 latency=100 send=irq1#1",
            "t=100 vcpu0/recv1 park irq1 ticket=0",
            "t=150 irq1 deliver epoch=1 recv=irq1#1",
            "t=200 vcpu0/recv1 wake irq1 epoch=1 by=irq1#1",
            "t=250 vcpu0 halt",
            "t=300 vcpu0.sb drain x",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let l = layout(&lines, (0, lines.len()));
        assert_eq!(
            l.lanes,
            vec![
                "kernel",
                "producer",
                "vcpu0",
                "vcpu0/recv1",
                "vcpu0.sb",
                "irq1"
            ]
        );
        assert_eq!(l.links.len(), 2);
        assert_eq!(l.links[0].kind, LinkKind::Interrupt);
        assert_eq!(l.links[1].kind, LinkKind::Wake);
        assert!(l.undelivered.is_empty());
        assert!(l.events.windows(2).all(|w| w[0].x < w[1].x));
        assert_eq!(window(100, 1000, None), (0, 100));
        assert_eq!(window(10_000, 1000, Some(5000)), (4201, 5201));
        assert_eq!(window(10_000, 1000, Some(9999)), (9000, 10_000));
    }
}
