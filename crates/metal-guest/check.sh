#!/usr/bin/env bash
# Format and lint checks for the bare-metal guest (its own workspace, built with the flags
# metal-image's build script uses). Run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")"
flags=(-Crelocation-model=static -Ctarget-feature=+crt-static -Clink-arg=-nostartfiles
  -Clink-arg=-nostdlib "-Clink-arg=-Wl,-T,$PWD/link.ld" -Clink-arg=-Wl,--build-id=none)
encoded=$(IFS=$'\x1f'; echo "${flags[*]}")
cargo fmt --check
CARGO_ENCODED_RUSTFLAGS="$encoded" cargo clippy --release --locked --target-dir ../../target/metal-guest-check -- -D warnings
