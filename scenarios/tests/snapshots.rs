//! Canonical traces, reviewed like code. A changed trace fails with a line diff; accept an
//! intended change with `cargo insta review` (or `INSTA_UPDATE=always cargo test`).

use scenarios::RunSpec;

fn trace(scenario: &str, seed: u64) -> String {
    let spec = RunSpec {
        capture_trace: true,
        ..RunSpec::seeded(scenario, seed)
    };
    let report = scenarios::run(&spec).expect("known scenario");
    let mut text = report.trace_lines.clone().unwrap_or_default().join("\n");
    text.push_str(&format!("\n{}\n", report.verdict_line()));
    text
}

macro_rules! snapshot {
    ($test:ident, $scenario:expr, $seed:expr) => {
        #[test]
        fn $test() {
            insta::with_settings!({ snapshot_path => "../../snapshots", prepend_module_to_snapshot => false }, {
                insta::assert_snapshot!(format!("{}-seed{}", $scenario, $seed), trace($scenario, $seed));
            });
        }
    };
}

snapshot!(mailbox_seed_1, "mailbox", 1);
snapshot!(litmus_sb_seed_1, "litmus-sb", 1);
snapshot!(calib_depth2_seed_1, "calib-depth2", 1);
snapshot!(pipe_echo_seed_1, "pipe-echo", 1);
snapshot!(cells_siblings_seed_1, "cells-siblings", 1);
snapshot!(cells_go_seed_1, "cells-go", 1);
snapshot!(rpc_two_party_seed_1, "rpc-two-party", 1);
