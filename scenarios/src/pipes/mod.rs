//! Ring-pipe scenarios: a guest kernel and the host monitor over simulated shared memory and
//! hypervisor events.

pub mod echo;
pub mod file;
pub mod files;
pub mod hostile;
pub mod net;
pub mod tcp;
pub mod world;
