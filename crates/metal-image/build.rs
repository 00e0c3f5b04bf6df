//! Builds `crates/metal-guest` (its own workspace) with a nested cargo: release profile,
//! `panic = "abort"`, static relocation, no C runtime and our linker script. It targets the host
//! triple, so no extra rustup target is needed; the VMM boots the result in long mode.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let crates = manifest_dir
        .parent()
        .expect("crates/ directory")
        .to_path_buf();
    let guest = crates.join("metal-guest");
    for watched in [
        "metal-guest/src",
        "metal-guest/Cargo.toml",
        "metal-guest/Cargo.lock",
        "metal-guest/link.ld",
        "guest/src",
        "guest/Cargo.toml",
        "guest-programs/src",
        "guest-programs/Cargo.toml",
        "ring-pipe/src",
        "ring-pipe/Cargo.toml",
        "hv/src",
        "hv/Cargo.toml",
        "raw-shm/src",
        "raw-shm/Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", crates.join(watched).display());
    }
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let target_dir = out.join("metal-target");
    let flags = [
        "-Crelocation-model=static".to_string(),
        "-Ctarget-feature=+crt-static".to_string(),
        "-Clink-arg=-nostartfiles".to_string(),
        "-Clink-arg=-nostdlib".to_string(),
        format!("-Clink-arg=-Wl,-T,{}", guest.join("link.ld").display()),
        "-Clink-arg=-Wl,--build-id=none".to_string(),
    ];
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(&guest)
        .args(["build", "--release", "--locked", "--target-dir"])
        .arg(&target_dir)
        // Our flags only: not the outer build's (sanitizers, coverage), and no clippy wrapper.
        .env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .expect("run cargo for the metal guest");
    if !output.status.success() {
        panic!(
            "building the bare-metal guest failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let image = target_dir.join("release").join("metal-guest");
    std::fs::copy(&image, out.join("metal-guest.elf")).expect("copy the guest image");
}
