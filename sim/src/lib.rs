//! The `sim` command as a library: [`main_with`] gives a binary every subcommand (run, sweep,
//! replay, shrink, report, bench, determinism check) over the catalogue it is handed; the fuzzer
//! and the tests reach the replay-file reader here too.
//!
//! With the default `catalogue` feature the crate also carries this project's own catalogue's
//! extras: hardware runs (`sim hw`) and the cell-host and ring benchmarks. A downstream binary
//! that brings its own catalogue builds without it:
//!
//! ```toml
//! sim = { path = "...", default-features = false }
//! ```
//!
//! ```no_run
//! # fn my_catalogue() -> harness::Catalogue { harness::Catalogue::new(vec![]) }
//! fn main() -> std::process::ExitCode {
//!     sim::main_with(my_catalogue())
//! }
//! ```

pub mod output;

pub mod bench;
#[cfg(feature = "catalogue")]
pub mod cells;
pub mod cli;
pub mod determinism;
pub mod exit;
pub mod files;
#[cfg(feature = "catalogue")]
pub mod hw;
pub mod json;
pub mod limits;
pub mod merge;
pub mod replay;
pub mod replay_file;
pub mod report;
pub mod run;
pub mod shard;
pub mod shrink;
pub mod signals;
pub mod single;
pub mod summary;
pub mod sweep;
pub mod trace_filter;

/// Runs the `sim` command line over `catalogue`.
pub fn main_with(catalogue: harness::Catalogue) -> std::process::ExitCode {
    cli::main(catalogue)
}
