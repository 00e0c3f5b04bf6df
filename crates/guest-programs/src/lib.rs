//! Guest workloads, written once against the guest kernel (`guest`) and the hypervisor seam
//! (`hv`), so the same code runs in the simulation (a vCPU as a simkit actor) and in a
//! bare-metal guest on a real vCPU. Each program takes its plan as plain data, which a bare-metal
//! guest receives as encoded boot parameters.
#![no_std]

extern crate alloc;

mod codec;
pub mod echo;
pub mod file;
pub mod stream;
pub mod tcp;
