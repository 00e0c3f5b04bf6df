//! `rpc-vs-capnp-rpc`: what capnp-rpc gets wrong is a finding (a metric and a trace line), never
//! a violation, so the scenario's clean sweep stays clean while its findings are counted.

mod common;

use scenarios::RunSpec;

fn metric(r: &scenarios::RunReport, name: &str) -> u64 {
    r.metrics
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("metric {name} missing"))
}

#[test]
fn a_clean_sweep_reports_capnp_rpc_findings_as_metrics_not_violations() {
    let mut messages = 0;
    for seed in 0..100 {
        let spec = RunSpec {
            capture_trace: true,
            ..RunSpec::seeded("rpc-vs-capnp-rpc", seed)
        };
        let r = common::run(&spec);
        assert!(r.passed(), "seed {seed}: {:?}", r.violations);
        let findings = metric(&r, "capnp_rpc_findings");
        let lines = r
            .trace_lines
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter(|l| l.contains("capnp-finding"))
            .count() as u64;
        assert_eq!(findings, lines, "seed {seed}: one trace line per finding");
        messages += metric(&r, "rpc_messages");
    }
    assert!(
        messages > 100 * 20,
        "the two sides talk: {messages} messages"
    );
}

/// Tallies the findings of a sweep: `VS_CAPNP_SEEDS=2000 cargo test -p scenarios --test
/// vs_capnp -- --ignored --nocapture`.
#[test]
#[ignore = "a report, not a check"]
fn tally_findings() {
    let n: u64 = std::env::var("VS_CAPNP_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let kinds = [
        "capnp_rpc_eorder_findings",
        "capnp_rpc_wire_findings",
        "capnp_rpc_abort_findings",
        "capnp_rpc_quiescence_findings",
        "capnp_rpc_panic_findings",
    ];
    let mut seeds_with = [0u64; 5];
    let mut any = Vec::new();
    let mut failing = Vec::new();
    let mut examples: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for seed in 0..n {
        let spec = RunSpec {
            capture_trace: true,
            ..RunSpec::seeded("rpc-vs-capnp-rpc", seed)
        };
        let r = common::run(&spec);
        if !r.passed() {
            failing.push(seed);
        }
        for (i, k) in kinds.iter().enumerate() {
            if metric(&r, k) > 0 {
                seeds_with[i] += 1;
            }
        }
        if metric(&r, "capnp_rpc_findings") > 0 {
            any.push(seed);
        }
        for l in r.trace_lines.as_deref().unwrap_or_default() {
            if let Some((_, f)) = l.split_once("capnp-finding ") {
                // Group by the text with numbers and lists blanked out.
                let mut key = String::new();
                let mut depth = 0;
                for c in f.chars() {
                    match c {
                        '[' => {
                            depth += 1;
                            if depth == 1 {
                                key.push_str("[..]");
                            }
                        }
                        ']' => depth -= 1,
                        _ if depth > 0 => {}
                        c if c.is_ascii_digit() => {
                            if !key.ends_with('#') {
                                key.push('#');
                            }
                        }
                        c => key.push(c),
                    }
                }
                let e = examples.entry(key).or_insert((seed, 0));
                e.1 += 1;
            }
        }
    }
    println!("seeds: {n}, failing: {failing:?}");
    println!(
        "seeds with any finding: {} {:?}",
        any.len(),
        &any[..any.len().min(30)]
    );
    for (k, c) in kinds.iter().zip(seeds_with) {
        println!("  {k}: {c} seeds");
    }
    for (k, (seed, count)) in &examples {
        println!("  [{count}x, first seed {seed}] {k}");
    }
}
