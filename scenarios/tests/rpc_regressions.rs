//! Seeds that once broke the RPC engine, replayed as they run today. Each test also checks
//! that its seed still reaches the situation it was kept for: a workload change moves the
//! seeds, and a stale one would pass without testing anything (then pick a new seed with
//! `sim sweep` on the old engine, or drop the test with a reason).

mod common;

use scenarios::RunSpec;

fn run_traced(scenario: &str, seed: u64) -> Vec<String> {
    let spec = RunSpec {
        capture_trace: true,
        ..RunSpec::seeded(scenario, seed)
    };
    let r = common::run(&spec);
    assert!(r.passed(), "{scenario} seed {seed}: {:?}", r.violations);
    r.trace_lines.unwrap_or_default()
}

/// Vat 2's calls pipelined on an answer of vat 0 that vat 0 settled with another answer
/// (`return_answer`) went on to vat 2 through a promise nobody else held; it was freed, and
/// with it the mark that calls had gone that way, so the loopback resolution raised no
/// embargo and a later call overtook them (E-order). Results now hold such nodes.
#[test]
fn three_vat_1198_pipeline_through_a_followed_answer_keeps_its_embargo() {
    let trace = run_traced("rpc-three-vat", 1198);
    assert!(
        trace.iter().any(|l| l.contains("sender-loopback")),
        "seed 1198 no longer raises a loopback embargo"
    );
}

/// One capability provided twice to the same recipient: the accept-disembargo through the
/// promise that resolved to the first handoff was passed on naming the second `Provide`,
/// and the first `Accept` waited for ever. The promise's export now remembers its vine.
#[test]
fn handoff_1776_accept_disembargo_names_the_promises_own_provide() {
    let trace = run_traced("rpc-handoff", 1776);
    assert!(
        trace
            .iter()
            .any(|l| l.contains("disembargo") && l.contains("accept")),
        "seed 1776 no longer sends an accept-disembargo"
    );
}
