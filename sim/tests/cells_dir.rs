//! `sim cells DIR`: a directory of cells swept under the simulator, and bad input refused with
//! exit 2 and one line naming the problem.

mod common;

use common::{scratch, sim, stderr, stdout};
use std::path::PathBuf;

fn go_cells() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crates/cellhost/go-cells")
}

#[test]
fn our_go_cells_sweep_clean_and_a_failure_would_replay_by_directory() {
    let reports = scratch("cells-dir-reports");
    let dir = go_cells();
    let o = sim(&[
        "cells",
        dir.to_str().expect("utf-8 path"),
        "--seeds",
        "0..200",
        "--reports",
        reports.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let last = stdout(&o).lines().last().unwrap_or_default().to_string();
    assert!(last.contains("ran=200 failures=0"), "{last}");
    assert!(last.contains("scenario=cells:8:"), "{last}");
    let one = sim(&["cells", dir.to_str().expect("utf-8 path"), "--seed", "3"]);
    assert_eq!(one.status.code(), Some(0), "{}", stderr(&one));
    let _ = std::fs::remove_dir_all(&reports);
}

#[test]
fn bad_directories_exit_2_naming_the_problem() {
    let root = scratch("cells-dir-bad");
    let cell = root.join("odd");
    std::fs::create_dir_all(&cell).expect("cell dir");
    std::fs::write(
        cell.join("pulp.cell.toml"),
        "name = \"odd\"\nversion = \"1\"\nmax_fuel = 5\n",
    )
    .expect("manifest");
    let o = sim(&[
        "cells",
        root.to_str().expect("utf-8 path"),
        "--seeds",
        "0..2",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("unknown key `max_fuel`"), "{err}");
    let missing = root.join("nowhere");
    let o = sim(&["cells", missing.to_str().expect("utf-8 path")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not a directory"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&root);
}
