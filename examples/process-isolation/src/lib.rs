//! What process isolation in sweeps is for, shown on two small components with the faults a
//! sweep inside one process cannot report (`sim sweep --isolation process`, the default, against
//! `--isolation thread`):
//!
//! - [`frames`]: a frame queue whose writer publishes a frame's length before its bytes; a reader
//!   that sees the length first finds fewer bytes than it announces, and aborts the process (the
//!   way a C library's `assert` or a Rust `abort` on a broken invariant does). In one process
//!   that ends the whole sweep; isolated, it is one seed's failure with a replay file.
//! - [`routes`]: a route table built on first use and kept in a process-global cache. Its
//!   builder publishes the table as ready before filling it, a race a lookup can lose, but only
//!   on the first build in a process: every later run in the same process finds the cache warm.
//!   A sweep in one process checks the race once; a process per seed checks it at every seed
//!   (the failure Sui's simulator found hidden by state left between seeds).
//!
//! `cargo run -p process-isolation -- sweep --scenario frames --seeds 0..200` runs them.

pub mod frames;
pub mod routes;

use harness::Catalogue;

/// This crate's catalogue.
pub fn catalogue() -> Catalogue {
    Catalogue::new(vec![&frames::FRAMES, &routes::ROUTES])
}
