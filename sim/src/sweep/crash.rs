//! Runs whose process died: how a child's end is described, and replaying a crash file (the
//! seed is run again in a child process, since a crash in this one would end the replay too).

use crate::exit::UsageError;
use crate::replay_file::ReplayFile;
use crate::run::Show;
use crate::{errln, json, outln};
use harness::RunSpec;
use serde_json::json;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitCode, ExitStatus, Stdio};

/// Standard error kept from a child that died: its last bytes say why (a panic message, "has
/// overflowed its stack", "memory allocation failed").
pub const STDERR_TAIL: usize = 2048;

fn signal_name(sig: i32) -> &'static str {
    match sig {
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        15 => "SIGTERM",
        _ => "a signal",
    }
}

/// Whether a single run's exit means it ran to a verdict (0 pass, 1 fail).
pub fn ran_to_a_verdict(status: &ExitStatus) -> bool {
    matches!(status.code(), Some(0 | 1))
}

/// "killed by signal 6 (SIGABRT)" or "exited with code 101".
pub fn describe(status: &ExitStatus) -> String {
    match (status.signal(), status.code()) {
        (Some(sig), _) => format!("killed by signal {sig} ({})", signal_name(sig)),
        (None, Some(code)) => format!("exited with code {code}"),
        (None, None) => "ended without a status".into(),
    }
}

/// The last line of `stderr` that says something, for the failure's one line.
pub fn last_words(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    text.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with("note:"))
        .map(|l| l.chars().take(300).collect())
        .unwrap_or_default()
}

/// The arguments of `sim` that run `spec`'s seed once.
pub fn single_run_args(spec: &RunSpec, mem: &str, seed: u64) -> Vec<String> {
    let mut args = vec![
        "--scenario".to_string(),
        spec.scenario.clone(),
        "--seed".into(),
        seed.to_string(),
        "--strategy".into(),
        spec.strategy.name().into(),
        "--mem".into(),
        mem.into(),
    ];
    if let Some(d) = spec.pct_depth {
        args.extend(["--pct-depth".into(), d.to_string()]);
    }
    if let Some(p) = &spec.plant {
        args.extend(["--plant".into(), p.clone()]);
    }
    args
}

/// `sim replay` of a crash file: exit 1 and "reproduced" when the run crashes its process
/// again, 3 when it now runs to a verdict.
pub fn replay(
    file: &ReplayFile,
    spec: &RunSpec,
    path: &Path,
    show: &Show,
) -> Result<ExitCode, UsageError> {
    let simkit::DecisionMode::Seeded(seed) = spec.source else {
        return Err(UsageError(
            "a crash file names a seed, and this one has none".into(),
        ));
    };
    let exe = std::env::current_exe()
        .map_err(|e| UsageError(format!("cannot find this program to run the seed in: {e}")))?;
    let out = Command::new(exe)
        .args(single_run_args(spec, &file.mem, seed))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| UsageError(format!("cannot start a child process: {e}")))?;
    let tail = &out.stderr[out.stderr.len().saturating_sub(STDERR_TAIL)..];
    let crashed = !ran_to_a_verdict(&out.status);
    let now = if crashed {
        format!("{}: {}", describe(&out.status), last_words(tail))
    } else if out.status.code() == Some(0) {
        "it ran to a pass".into()
    } else {
        "it ran to a failure".into()
    };
    let recorded = file.violations.first().cloned().unwrap_or_default();
    if show.json {
        json::print(&json!({
            "type": "replay",
            "file": path.display().to_string(),
            "outcome": if crashed { "reproduced" } else { "diverged" },
            "recorded": recorded,
            "now": now,
        }));
    } else if crashed {
        outln!("reproduced: the run crashed its process again ({now})");
        outln!("recorded: {recorded}");
    } else {
        errln!("sim: replay DIVERGED: the file records a crash ({recorded}); this time {now}");
    }
    Ok(if crashed {
        ExitCode::from(1)
    } else {
        ExitCode::from(crate::exit::DIVERGED)
    })
}
