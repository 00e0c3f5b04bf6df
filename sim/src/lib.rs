//! The `sim` command as a library, so the fuzzer and tests can reach its parsers.

pub mod bench;
pub mod bench_cells;
pub mod bench_ring;
pub mod cli;
pub mod determinism;
pub mod hw;
pub mod hw_files;
pub mod hw_metal;
pub mod hw_pipes;
pub mod hw_tcp;
pub mod hw_trace;
pub mod replay_file;
pub mod shrink;
pub mod sweep;
