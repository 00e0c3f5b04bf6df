//! Writes the starting corpus of the `scenario_bytes` target: for every scenario of the
//! catalogue, under the random walk and PCT in its default memory mode, the decision streams
//! that seeds 0..N actually consumed (so the fuzzer starts from whole, real runs instead of
//! a few bytes of defaults), and one run per planted bug.
//!
//!     cargo run --release --bin seed_corpus -- corpus/scenario_bytes [N]

use simkit::DecisionMode;
use simkit_fuzz::header;
use std::path::PathBuf;

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next().map(PathBuf::from) else {
        eprintln!("usage: seed_corpus DIR [SEEDS]");
        return std::process::ExitCode::from(2);
    };
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(4);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("seed_corpus: cannot create {}: {e}", dir.display());
        return std::process::ExitCode::from(2);
    }
    let catalogue = scenarios::catalogue();
    let mut written = 0;
    for (index, scenario) in catalogue.scenarios().iter().enumerate() {
        let mut shapes: Vec<(bool, Option<usize>)> = vec![(false, None), (true, None)];
        shapes.extend((0..scenario.bugs().len()).map(|b| (false, Some(b))));
        for (pct, bug) in shapes {
            let mem = 1; // tso: the header's default shape
            let head = header(index, mem, pct, bug);
            for seed in 0..n {
                let Some(spec) = simkit_fuzz::header_spec(&head) else { continue };
                let spec = scenarios::RunSpec {
                    source: DecisionMode::Seeded(seed),
                    ..spec
                };
                let Ok(report) = scenarios::run(&spec) else { continue };
                let mut input = head.to_vec();
                input.extend_from_slice(&report.decisions);
                let name = format!(
                    "{}-{}-{}-{seed}",
                    scenario.name(),
                    if pct { "pct" } else { "random" },
                    bug.map_or_else(|| "clean".into(), |b| format!("bug{b}"))
                );
                if std::fs::write(dir.join(name), input).is_ok() {
                    written += 1;
                }
            }
        }
    }
    println!("seed_corpus: wrote {written} inputs to {}", dir.display());
    std::process::ExitCode::SUCCESS
}
