//! Helpers shared by the `sim` command's tests: running the built binary as a user would, and
//! reading what it printed and wrote.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The built `sim`, without cargo's variables (which would let `hw` rebuild itself).
pub fn command() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sim"));
    c.env_remove("CARGO")
        .env_remove("CARGO_MANIFEST_DIR")
        .env_remove("SIM_SEED");
    c
}

pub fn sim(args: &[&str]) -> Output {
    command().args(args).output().expect("sim runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn last_line(o: &Output) -> String {
    stdout(o).lines().last().unwrap_or_default().to_string()
}

pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sim-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Files below `dir` that `keep` accepts, sorted.
pub fn files_where(dir: &Path, keep: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("readable").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if keep(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The replay files (`seed-N.json`) below `dir`.
pub fn replay_files(dir: &Path) -> Vec<PathBuf> {
    files_where(dir, |p| {
        p.extension().is_some_and(|x| x == "json")
            && p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
    })
}

pub fn utf8(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

/// Asserts the run ended with exit 2, one line on stderr naming `want`, and no panic.
pub fn assert_refused(o: &Output, want: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(want), "stderr was {err:?}, wanted {want:?}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err:?}");
    assert!(!err.contains("panicked"), "{err}");
}
