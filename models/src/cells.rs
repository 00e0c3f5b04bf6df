//! Oracles for the cell host, judged from what reached the WASM engine (a log of each instance's
//! entries, recorded by the simulation's engine binding), never from the host's own lifecycle
//! flags or locks.
//!
//! - Start-up: an instance of a module with a start function (`_initialize`, `_start`) is
//!   entered only after that function ran in it or the module's start image was put into it.
//! - Failure: once an export of an instance failed (a trap, a spent budget, `proc_exit`),
//!   nothing enters that instance again; only a new instance (a restart) may serve.
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
    /// A new instance; `start_up`: its module has a start function that must run (or whose
    /// image must be restored) before anything else enters it.
    Created {
        start_up: bool,
    },
    /// The start function ran in the instance, or the start image was put into it.
    StartedUp,
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

/// A start function the host runs before anything else.
fn start(export: &str) -> bool {
    matches!(export, "_initialize" | "_start")
}

/// Checks one instance's log.
pub fn check_instance(cell: &str, log: &[CellEvent], heap_bounded: bool) -> Vec<Violation> {
    let mut v = Vec::new();
    let mut active: Option<&str> = None;
    let mut initialised = false;
    let mut shut_down = false;
    let mut unanswered = 0u32;
    let mut first_top: Option<u64> = None;
    let mut needs_start = false;
    let mut failed: Option<&str> = None;
    for e in log {
        match e {
            CellEvent::Created { start_up } => {
                // The log goes on with a new instance (a restart): its own lifecycle.
                needs_start = *start_up;
                failed = None;
                initialised = false;
                active = None;
                unanswered = 0;
                first_top = None;
            }
            CellEvent::StartedUp => needs_start = false,
            CellEvent::Start { export } | CellEvent::Nested { export } => {
                let nested = matches!(e, CellEvent::Nested { .. });
                if needs_start && !start(export) {
                    v.push(
                        Violation::new(
                            "cell-lifecycle",
                            format!("cell {cell}: `{export}` entered before the instance's start function ran"),
                        )
                        .kind("entered-before-start-up")
                        .object(format!("cell {cell}")),
                    );
                    needs_start = false;
                }
                if let Some(earlier) = failed {
                    v.push(
                        Violation::new(
                            "cell-lifecycle",
                            format!("cell {cell}: `{export}` entered an instance whose `{earlier}` had failed"),
                        )
                        .kind("entered-after-failure")
                        .object(format!("cell {cell}")),
                    );
                    failed = None;
                }
                if shut_down {
                    v.push(
                        Violation::new(
                            "cell-lifecycle",
                            format!("cell {cell}: `{export}` entered after pulp_shutdown"),
                        )
                        .kind("entered-after-shutdown")
                        .object(format!("cell {cell}")),
                    );
                }
                if !initialised && !allocator(export) && !start(export) && export != "pulp_init" {
                    v.push(
                        Violation::new(
                            "cell-lifecycle",
                            format!(
                                "cell {cell}: `{export}` entered before a successful pulp_init"
                            ),
                        )
                        .kind("entered-before-init")
                        .object(format!("cell {cell}")),
                    );
                }
                if let Some(running) = active
                    && !(nested && allocator(export))
                {
                    v.push(
                        Violation::new(
                            "cell-exclusive-entry",
                            format!(
                                "cell {cell}: `{export}` entered while `{running}` was running"
                            ),
                        )
                        .kind("concurrent-entry")
                        .object(format!("cell {cell}")),
                    );
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
                        v.push(
                            Violation::new(
                                "cell-calls-answered",
                                format!(
                                    "cell {cell}: `{export}` ended with a sibling call unanswered"
                                ),
                            )
                            .kind("unanswered-call")
                            .object(format!("cell {cell}")),
                        );
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
                failed = Some(export);
            }
            CellEvent::Deferred => unanswered += 1,
            CellEvent::Answered { .. } => unanswered = unanswered.saturating_sub(1),
            CellEvent::HeapTop { .. } if !heap_bounded => {}
            CellEvent::HeapTop { top } => {
                match first_top {
                    None => first_top = Some(*top),
                    Some(first) if *top > first => {
                        v.push(Violation::new(
                        "cell-memory-bounded",
                        format!("cell {cell}: heap top grew from {first} to {top} across entries"),
                    ).kind("heap-grew").object(format!("cell {cell}")));
                        // One report per instance is enough.
                        first_top = Some(u64::MAX);
                    }
                    Some(_) => {}
                }
            }
            CellEvent::Dropped => {
                failed = None;
                if let Some(running) = active {
                    v.push(
                        Violation::new(
                            "cell-lifecycle",
                            format!("cell {cell}: closed while `{running}` was running"),
                        )
                        .kind("closed-while-running")
                        .object(format!("cell {cell}")),
                    );
                }
            }
        }
    }
    if unanswered > 0
        && let Some(running) = active
    {
        v.push(
            Violation::new(
                "cell-calls-answered",
                format!("cell {cell}: a sibling call from `{running}` was never answered"),
            )
            .kind("unanswered-call")
            .object(format!("cell {cell}")),
        );
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
        let created = CellEvent::Created { start_up: true };
        assert_eq!(
            oracles(&[created.clone(), start("pulp_init")]),
            ["cell-lifecycle"]
        );
        let mut log = vec![created, CellEvent::StartedUp];
        log.extend(ready.clone());
        log.extend([
            start("pulp_step"),
            CellEvent::Failed {
                export: "pulp_step".into(),
            },
            start("pulp_step"),
        ]);
        assert_eq!(oracles(&log), ["cell-lifecycle"]);
    }
}
