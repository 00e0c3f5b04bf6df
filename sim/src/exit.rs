//! Exit codes and the one error type that means "bad usage": a leaf every subcommand imports.
//!
//! 0 passed; 1 a failure was found (or reproduced); 2 bad usage or bad input ([`UsageError`]);
//! 3 a replay diverged from its file ([`DIVERGED`]).

use std::process::ExitCode;

/// Bad usage or bad input: one line on stderr, exit 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl<E: std::fmt::Display> From<E> for UsageError {
    fn from(e: E) -> Self {
        UsageError(e.to_string())
    }
}

/// The exit code of a replay that diverged from its file.
pub const DIVERGED: u8 = 3;

/// 0 for a run that passed, 1 for one that failed.
pub fn verdict_code(passed: bool) -> ExitCode {
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
