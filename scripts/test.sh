#!/usr/bin/env bash
# The test command (see README): formatting, lints, every test (including the determinism gate
# over every scenario), and a short run of each fuzz target. It installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== format"
cargo fmt --all -- --check

echo "== clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings

echo "== bare-metal guest: format and clippy (its own workspace)"
bash crates/metal-guest/check.sh

echo "== tests"
log="$(mktemp)"
cargo test --workspace --all-features 2>&1 | tee "$log"
passed=$(grep -Eo '^test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')
rm -f "$log"

echo "== acceptance sweeps (release build)"
bash scripts/acceptance.sh

echo "== fuzz smoke (cargo-fuzz on stable, no sanitizer)"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --version 0.13.2 --locked
fi
seconds="${FUZZ_SECONDS:-20}"
(
  cd fuzz
  for target in $(cargo fuzz list); do
    echo "-- fuzz $target for ${seconds}s"
    # Checked-in seed inputs (fuzz/seeds/<target>) start the search where they exist.
    corpora=()
    if [ -d "seeds/$target" ]; then
      mkdir -p "corpus/$target"
      corpora=("corpus/$target" "seeds/$target")
    fi
    cargo fuzz run --sanitizer none "$target" "${corpora[@]}" -- -max_total_time="$seconds" -print_final_stats=1 2>&1 | tail -n 30
  done
)
echo "== all checks passed"
echo "tests: ${passed} passed, ${failed} failed"
