//! `--check-determinism`: run the same seed twice, compare the traces line by line and the
//! decision streams byte by byte, and name the first divergence.

use crate::exit::UsageError;
use harness::Catalogue;
use harness::RunSpec;
use std::process::ExitCode;

pub fn first_divergence<'a>(
    a: &'a [String],
    b: &'a [String],
) -> Option<(usize, Option<&'a String>, Option<&'a String>)> {
    let n = a.len().max(b.len());
    (0..n)
        .find(|i| a.get(*i) != b.get(*i))
        .map(|i| (i, a.get(i), b.get(i)))
}

pub fn check(catalogue: &Catalogue, mut spec: RunSpec) -> Result<ExitCode, UsageError> {
    spec.capture_trace = true;
    let first = harness::run(catalogue, &spec)?;
    let second = harness::run(catalogue, &spec)?;
    let (la, lb) = (
        first.trace_lines.clone().unwrap_or_default(),
        second.trace_lines.clone().unwrap_or_default(),
    );
    let identical = match first_divergence(&la, &lb) {
        Some((i, a, b)) => {
            crate::outln!("DIVERGED at event {i} (of {} / {}):", la.len(), lb.len());
            crate::outln!("  run 1: {}", a.map_or("<end of trace>", String::as_str));
            crate::outln!("  run 2: {}", b.map_or("<end of trace>", String::as_str));
            false
        }
        None if first.decisions != second.decisions => {
            let at = first
                .decisions
                .iter()
                .zip(&second.decisions)
                .position(|(x, y)| x != y);
            crate::outln!(
                "DIVERGED: traces match but decision streams differ at byte {}",
                at.unwrap_or(first.decisions.len().min(second.decisions.len()))
            );
            false
        }
        None => {
            crate::outln!(
                "deterministic: 2 runs, {} events, {} decisions, trace={:016x}",
                la.len(),
                first.draws,
                first.trace_hash
            );
            true
        }
    };
    crate::outln!("{}", first.verdict_line());
    Ok(if identical {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
