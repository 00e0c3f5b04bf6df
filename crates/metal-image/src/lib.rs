//! The bare-metal guest image, an x86-64 ELF executable linked at `hv::metal::IMAGE_GPA`, for
//! `hv_kvm::Machine::load`. Built from `crates/metal-guest` by this crate's build script.

/// The image bytes.
pub static IMAGE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/metal-guest.elf"));
