//! Bounds on numeric options and inputs, each following from what the number means, so that no
//! input makes `sim` hang, eat memory or abort: a bad value is refused with exit 2 and one line.
//! (PCT's depth is bounded by the harness: at most the run's step budget.)

use crate::exit::UsageError;

/// The largest replay file read, in bytes. The largest run a scenario allows (a step budget of
/// two million, a byte or two of decisions a step, hex-encoded) stays well below it.
pub const REPLAY_FILE_LIMIT: u64 = 16 << 20;

/// Worker threads per core past which more threads only add switching: a sweep's runs are pure
/// computation.
pub const JOBS_PER_CORE: usize = 8;

/// The most trial runs a shrink may be given (each is a whole run).
pub const MAX_SHRINK_RUNS: u64 = 10_000_000;

/// Failing seeds a sweep keeps a summary row for; past it the summary counts them.
pub const SUMMARY_ROWS: usize = 10_000;

/// Failing seeds `summary.json` lists (the smallest); past it the counts stay exact and every
/// seed still has its replay file. Bounds a summary's memory and size whatever the sweep finds.
pub const JSON_FAILURES: usize = 100_000;

/// Seeds a child process runs before it is replaced, at most.
pub const MAX_SEEDS_PER_PROCESS: u64 = 1 << 32;

/// The machine's cores as the standard library sees them.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `--jobs`: default every core; at least 1, at most [`JOBS_PER_CORE`] per core.
pub fn jobs(requested: Option<usize>) -> Result<usize, UsageError> {
    let cores = cores();
    let max = cores * JOBS_PER_CORE;
    match requested {
        None => Ok(cores),
        Some(0) => Err(UsageError("--jobs 0: at least one worker is needed".into())),
        Some(j) if j > max => Err(UsageError(format!(
            "--jobs {j} is more than {max} ({JOBS_PER_CORE} per core on this machine's {cores}); runs are pure computation, more threads only add switching"
        ))),
        Some(j) => Ok(j),
    }
}

/// `--seeds-per-process`: at least 1, at most [`MAX_SEEDS_PER_PROCESS`].
pub fn seeds_per_process(k: u64) -> Result<u64, UsageError> {
    if k == 0 || k > MAX_SEEDS_PER_PROCESS {
        return Err(UsageError(format!(
            "--seeds-per-process {k} is out of range: between 1 and {MAX_SEEDS_PER_PROCESS}"
        )));
    }
    Ok(k)
}

/// `--max-runs` of a shrink: at least 1, at most [`MAX_SHRINK_RUNS`].
pub fn shrink_runs(n: u64) -> Result<u64, UsageError> {
    if n == 0 || n > MAX_SHRINK_RUNS {
        return Err(UsageError(format!(
            "--max-runs {n} is out of range: between 1 and {MAX_SHRINK_RUNS} trial runs"
        )));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_are_bounded_by_the_cores() {
        assert!(jobs(Some(0)).is_err());
        assert!(jobs(Some(usize::MAX)).is_err());
        assert_eq!(jobs(Some(1)).ok(), Some(1));
        assert_eq!(jobs(None).ok(), Some(cores()));
    }
}
