//! Ring-pipe scenarios: a guest kernel and the host monitor over simulated shared memory and
//! hypervisor events.

pub mod echo;
pub mod file;
pub mod files;
pub mod hostile;
pub mod net;
pub mod tcp;
pub mod world;

/// How every oracle names the plan's `i`-th pipe: by the id it got on the wire (`pipe 3`), as
/// the monitor, the trace (`shm.pipe3.*`, `recv3`) and the liveness checks do.
pub fn pipe_name(results: &guest_programs::echo::Results, i: usize) -> String {
    match results.pipe_ids.get(&i) {
        Some(id) => format!("pipe {id}"),
        None => format!("the workload's pipe {i} (never opened)"),
    }
}
