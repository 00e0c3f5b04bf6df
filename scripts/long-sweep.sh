#!/usr/bin/env bash
# The long sweep, for nightly use: every component scenario under every strategy over a wide
# seed window (default 0..1000000), on a release build. Failures are kept as replay files
# under the report directory; the script exits 1 if any sweep failed, after running them all.
#
#   scripts/long-sweep.sh [SEEDS] [REPORTS]      e.g. scripts/long-sweep.sh 1000000..2000000
#
# On this project's 2-core machine 0..1000000 of every scenario under random and pct takes
# about six hours (figures per scenario: docs/performance.md); shard it over machines with
# `sim sweep --shard` where that exists, or split the seed range by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
seeds="${1:-0..1000000}"
reports="${2:-reports/long-sweep}"
cargo build --release -q -p sim
sim=target/release/sim
scenarios=$("$sim" --list --kind component)
status=0
for scenario in $scenarios; do
  for strategy in random pct; do
    start=$(date +%s)
    if out=$("$sim" sweep --scenario "$scenario" --strategy "$strategy" --seeds "$seeds" --reports "$reports"); then
      verdict=clean
    else
      verdict=FAILED
      status=1
    fi
    echo "$verdict: $scenario $strategy $seeds in $(( $(date +%s) - start )) s: $(echo "$out" | tail -n 1 | grep -o 'failures=.*')"
  done
done
exit "$status"
