//! Oracles for the cell host, judged from what reached the WASM engine (a log of each instance's
//! entries, recorded by the simulation's engine binding), never from the host's own lifecycle
//! flags or locks.
//!
//! - Lifecycle: nothing but `pulp_init` (and the allocator) before an init that returned 0;
//!   nothing at all once `pulp_shutdown` started; an instance is never dropped while an export
//!   of it is running or suspended.
//! - Exclusive entry: no export starts while another export of the same instance is running or
//!   suspended; only the allocator may be called into a suspended instance (by the host, to
//!   hand it a response).
//! - Every sibling call a cell makes is answered (its import resumes with a code) before the
//!   cell's export ends, unless the export was abandoned for a trap or its fuel budget.
//! - Bounded memory: when the host begins each entry, the cell's heap top (its diagnostic probe)
//!   is no higher than when it began the first: a host that frees what it allocates leaves a
//!   cell's allocator where it found it (checked for cells whose allocator gives memory back).

use crate::Violation;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CellEvent {
    /// A resumable entry into an export.
    Start {
        export: String,
    },
    /// A run-to-completion call the host made (allocator, diagnostics).
    Nested {
        export: String,
    },
    Finish {
        export: String,
        result: Option<i64>,
    },
    /// The export trapped or ran out of budget and was abandoned.
    Failed {
        export: String,
    },
    /// A host import deferred (a sibling call asked for).
    Deferred,
    /// The deferred import was answered with this code.
    Answered {
        code: i64,
    },
    /// The heap top after a completed top-level entry.
    HeapTop {
        top: u64,
    },
    /// The instance was dropped (closed).
    Dropped,
}

/// Exports the host may call into a suspended instance.
fn allocator(export: &str) -> bool {
    matches!(export, "pulp_alloc" | "pulp_free") || export.starts_with("probe_")
}

/// Checks one instance's log.
pub fn check_instance(cell: &str, log: &[CellEvent], heap_bounded: bool) -> Vec<Violation> {
    let mut v = Vec::new();
    let mut active: Option<&str> = None;
    let mut initialised = false;
    let mut shut_down = false;
    let mut unanswered = 0u32;
    let mut first_top: Option<u64> = None;
    for e in log {
        match e {
            CellEvent::Start { export } | CellEvent::Nested { export } => {
                let nested = matches!(e, CellEvent::Nested { .. });
                if shut_down {
                    v.push(Violation::new(
                        "cell-lifecycle",
                        format!("{cell}: `{export}` entered after pulp_shutdown"),
                    ));
                }
                if !initialised && !allocator(export) && export != "pulp_init" {
                    v.push(Violation::new(
                        "cell-lifecycle",
                        format!("{cell}: `{export}` entered before a successful pulp_init"),
                    ));
                }
                if let Some(running) = active
                    && !(nested && allocator(export))
                {
                    v.push(Violation::new(
                        "cell-exclusive-entry",
                        format!("{cell}: `{export}` entered while `{running}` was running"),
                    ));
                }
                if !nested {
                    active = Some(export);
                    if export == "pulp_shutdown" {
                        shut_down = true;
                    }
                }
            }
            CellEvent::Finish { export, result } => {
                if export == "pulp_init" && *result == Some(0) {
                    initialised = true;
                }
                if active == Some(export.as_str()) {
                    if unanswered > 0 {
                        v.push(Violation::new(
                            "cell-calls-answered",
                            format!("{cell}: `{export}` ended with a sibling call unanswered"),
                        ));
                    }
                    active = None;
                    unanswered = 0;
                }
            }
            CellEvent::Failed { export } => {
                if active == Some(export.as_str()) {
                    active = None;
                    unanswered = 0;
                }
            }
            CellEvent::Deferred => unanswered += 1,
            CellEvent::Answered { .. } => unanswered = unanswered.saturating_sub(1),
            CellEvent::HeapTop { .. } if !heap_bounded => {}
            CellEvent::HeapTop { top } => match first_top {
                None => first_top = Some(*top),
                Some(first) if *top > first => {
                    v.push(Violation::new(
                        "cell-memory-bounded",
                        format!("{cell}: heap top grew from {first} to {top} across entries"),
                    ));
                    // One report per instance is enough.
                    first_top = Some(u64::MAX);
                }
                Some(_) => {}
            },
            CellEvent::Dropped => {
                if let Some(running) = active {
                    v.push(Violation::new(
                        "cell-lifecycle",
                        format!("{cell}: closed while `{running}` was running"),
                    ));
                }
            }
        }
    }
    if unanswered > 0
        && let Some(running) = active
    {
        v.push(Violation::new(
            "cell-calls-answered",
            format!("{cell}: a sibling call from `{running}` was never answered"),
        ));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(e: &str) -> CellEvent {
        CellEvent::Start { export: e.into() }
    }
    fn nested(e: &str) -> CellEvent {
        CellEvent::Nested { export: e.into() }
    }
    fn finish(e: &str, r: i64) -> CellEvent {
        CellEvent::Finish {
            export: e.into(),
            result: Some(r),
        }
    }

    #[test]
    fn a_healthy_log_passes() {
        let log = vec![
            nested("pulp_alloc"),
            start("pulp_init"),
            finish("pulp_init", 0),
            CellEvent::HeapTop { top: 4096 },
            start("pulp_step"),
            CellEvent::Deferred,
            nested("pulp_alloc"),
            CellEvent::Answered { code: 0 },
            finish("pulp_step", 1),
            CellEvent::HeapTop { top: 4096 },
            start("pulp_shutdown"),
            finish("pulp_shutdown", 0),
            CellEvent::Dropped,
        ];
        assert!(check_instance("a", &log, true).is_empty());
    }

    #[test]
    fn each_rule_can_fail() {
        let oracles = |log: &[CellEvent]| -> Vec<&'static str> {
            check_instance("a", log, true)
                .iter()
                .map(|v| v.oracle)
                .collect()
        };
        assert_eq!(oracles(&[start("pulp_step")]), ["cell-lifecycle"]);
        let ready = [start("pulp_init"), finish("pulp_init", 0)];
        let mut log = ready.to_vec();
        log.extend([start("pulp_step"), start("pulp_on_call")]);
        assert_eq!(oracles(&log), ["cell-exclusive-entry"]);
        let mut log = ready.to_vec();
        log.extend([
            start("pulp_shutdown"),
            finish("pulp_shutdown", 0),
            start("pulp_step"),
        ]);
        assert_eq!(oracles(&log), ["cell-lifecycle"]);
        let mut log = ready.to_vec();
        log.extend([start("pulp_step"), CellEvent::Dropped]);
        assert_eq!(oracles(&log), ["cell-lifecycle"]);
        let mut log = ready.to_vec();
        log.extend([start("pulp_step"), CellEvent::Deferred]);
        assert_eq!(oracles(&log), ["cell-calls-answered"]);
        let mut log = ready.to_vec();
        log.extend([
            CellEvent::HeapTop { top: 4096 },
            CellEvent::HeapTop { top: 4104 },
        ]);
        assert_eq!(oracles(&log), ["cell-memory-bounded"]);
    }
}
