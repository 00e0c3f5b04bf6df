#!/usr/bin/env bash
# Regenerates crates/captp/src/generated/{rpc,probe}_capnp.rs from crates/captp/schema/*.capnp
# (rpc.capnp: the standard protocol; probe.capnp: our own test interface).
#
# The generated code is checked in so that building the workspace never needs the `capnp`
# compiler. This script is only for changing the schema or the code generator; on an unchanged
# tree it reproduces the checked-in file byte for byte (`git diff` stays empty).
#
# It installs what it needs: Debian's `capnproto` (the `capnp` compiler) and `libcapnp-dev`
# (for `/capnp/c++.capnp`, which rpc.capnp imports), and a tiny generator program linked
# against the pinned `capnpc` crate, built in a cache directory outside the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

CAPNPC_VERSION="=0.27.0"
CAPNP_VERSION="=0.27.3"
cache="${CAPTP_REGEN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/captp-regen-capnp}"

if ! command -v capnp >/dev/null 2>&1 || [ ! -f /usr/include/capnp/c++.capnp ]; then
  apt-get update
  apt-get install -y capnproto libcapnp-dev
fi

# The generated header records the compiler's version; the checked-in file came from Debian
# bookworm's 0.9.2, so another version gives a (harmless) one-line diff.
if ! capnp --version | grep -qx "Cap'n Proto version 0.9.2"; then
  echo "warning: $(capnp --version) is not 0.9.2; expect a diff in the generated header" >&2
fi

# The generator: capnpc's CompilerCommand, run as a plain program so that we can choose the
# output directory and the parent module (`crate::generated`), which the `capnpc-rust`
# plugin binary cannot.
mkdir -p "$cache/src"
cat >"$cache/Cargo.toml" <<TOML
[package]
name = "captp-regen-capnp"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
capnp = "$CAPNP_VERSION"
capnpc = "$CAPNPC_VERSION"

[workspace]
TOML
cat >"$cache/src/main.rs" <<'RUST'
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, prefix, file, out] = args.as_slice() else {
        eprintln!("usage: captp-regen-capnp SRC_PREFIX SCHEMA OUT_DIR");
        std::process::exit(2);
    };
    if let Err(e) = capnpc::CompilerCommand::new()
        .src_prefix(prefix)
        .file(file)
        .output_path(out)
        .default_parent_module(vec!["generated".into()])
        .run()
    {
        eprintln!("capnp code generation failed: {e}");
        std::process::exit(1);
    }
}
RUST
cargo build --quiet --release --manifest-path "$cache/Cargo.toml" --target-dir "$cache/target"

mkdir -p crates/captp/src/generated
for schema in rpc probe; do
  "$cache/target/release/captp-regen-capnp" \
    crates/captp/schema "crates/captp/schema/$schema.capnp" crates/captp/src/generated
  echo "regenerated crates/captp/src/generated/${schema}_capnp.rs"
done
