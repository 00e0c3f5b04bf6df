#!/usr/bin/env bash
# The test command (see README): formatting, lints, every test (including the determinism gate
# over every scenario), and a short run of each fuzz target. It installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== format"
cargo fmt --all -- --check

echo "== clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings

echo "== tests"
cargo test --workspace --all-features

echo "== fuzz smoke (cargo-fuzz on stable, no sanitizer)"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --version 0.13.2 --locked
fi
seconds="${FUZZ_SECONDS:-20}"
(
  cd fuzz
  for target in $(cargo fuzz list); do
    echo "-- fuzz $target for ${seconds}s"
    cargo fuzz run --sanitizer none "$target" -- -max_total_time="$seconds" -print_final_stats=1 2>&1 | tail -n 30
  done
)
echo "== all checks passed"
