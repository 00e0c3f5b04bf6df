#!/usr/bin/env bash
# Acceptance sweeps, exactly as the issues state them, on a release build:
# - every component scenario sweeps clean over seeds 0..20000 (exit 0) under random and pct
#   (cells-go over 0..2000: it is slow);
# - every planted bug is found within seeds 0..10000 (exit 1), and its first failing seed's
#   replay file reproduces the failure with the same trace hash.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p sim
target="${CARGO_TARGET_DIR:-target}"
sim=$target/release/sim
reports="$(mktemp -d)"
trap 'rm -rf "$reports"' EXIT

# Every component scenario the catalogue declares (litmus tests and calibration bugs are
# judged by their own tests).
clean_scenarios=$("$sim" --list --kind component)
for scenario in $clean_scenarios; do
  # cells-go loads four 2.5 MB Go modules per seed (about 25-35 seeds/s on two cores, see
  # docs/performance.md): 2000 seeds per strategy here, 20000 in the nightly sweep.
  seeds=0..20000
  if [ "$scenario" = cells-go ]; then seeds=0..2000; fi
  for strategy in random pct; do
    if ! out=$("$sim" sweep --scenario "$scenario" --strategy "$strategy" --seeds "$seeds" --reports "$reports"); then
      echo "FAIL: $scenario ($strategy) is not clean over $seeds:"; echo "$out" | tail -n 8; exit 1
    fi
    echo "clean: $scenario $strategy: $(echo "$out" | tail -n 1 | grep -o 'ran=.*')"
  done
done

bugs=$("$sim" --list-bugs | awk '{print $1 ":" $2}')
for entry in $bugs; do
  bug=${entry%%:*}
  scenario=${entry#*:}
  dir="$reports/$bug"
  if out=$("$sim" sweep --scenario "$scenario" --plant "$bug" --seeds 0..10000 --stop-at-first --reports "$dir"); then
    echo "FAIL: planted bug $bug was not found in 0..10000"; exit 1
  fi
  replay=$(find "$dir" -name 'seed-*.json' | sort -V | awk 'NR == 1')
  # `sim replay` exits 1 and says "reproduced" when the failure replays exactly.
  want=$(grep -o '"trace_hash": "[0-9a-f]*"' "$replay" | grep -o '[0-9a-f]\{16\}')
  code=0
  got=$("$sim" replay "$replay" </dev/null) || code=$?
  last=$(printf '%s\n' "$got" | tail -n 1)
  case "$code:$last" in
    1:*"trace=$want verdict=fail") grep -q '^reproduced: ' <<<"$got" || { echo "FAIL: replay of $bug did not say reproduced"; exit 1; } ;;
    *) echo "FAIL: replay of $bug exited $code: $last (want trace=$want verdict=fail)"; exit 1 ;;
  esac
  echo "found: $bug ($scenario): $(echo "$out" | tail -n 1 | grep -o 'first_failure=[0-9]*') replay ok"
done
# The example from outside the catalogue, through its own sim: clean, and its planted bugs found.
cargo build --release -q -p bounded-queue
example=$target/release/bounded-queue
if ! out=$("$example" sweep --scenario bounded-queue --seeds 0..1000 --reports "$reports/example"); then
  echo "FAIL: the example is not clean over 0..1000:"; echo "$out" | tail -n 8; exit 1
fi
for bug in $("$example" --list-bugs | awk '{print $1}'); do
  if "$example" sweep --scenario bounded-queue --plant "$bug" --seeds 0..1000 --stop-at-first --reports "$reports/example" >/dev/null; then
    echo "FAIL: the example's planted bug $bug was not found in 0..1000"; exit 1
  fi
  echo "found: $bug (bounded-queue, through the example's own sim)"
done
echo "acceptance: all sweeps as expected"
