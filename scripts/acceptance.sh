#!/usr/bin/env bash
# Acceptance sweeps, exactly as the issues state them, on a release build:
# - every component scenario sweeps clean over seeds 0..2000 (exit 0);
# - every planted bug is found within seeds 0..10000 (exit 1), and its first failing seed's
#   replay file reproduces the failure with the same trace hash.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p sim
sim=target/release/sim
reports="$(mktemp -d)"
trap 'rm -rf "$reports"' EXIT

clean_scenarios="mailbox pipe-echo pipe-file pipe-hostile pipe-tcp cells-siblings cells-lifecycle cells-hostile rpc-two-party rpc-three-vat rpc-handoff rpc-vs-capnp-rpc"
for scenario in $clean_scenarios; do
  for strategy in random pct; do
    if ! out=$("$sim" sweep --scenario "$scenario" --strategy "$strategy" --seeds 0..2000 --reports "$reports"); then
      echo "FAIL: $scenario ($strategy) is not clean over 0..2000:"; echo "$out" | tail -n 8; exit 1
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
  want=$(grep -o '"trace_hash": "[0-9a-f]*"' "$replay" | grep -o '[0-9a-f]\{16\}')
  code=0
  got=$("$sim" replay "$replay" </dev/null) || code=$?
  last=$(printf '%s\n' "$got" | tail -n 1)
  case "$code:$last" in
    1:*"trace=$want verdict=fail") ;;
    *) echo "FAIL: replay of $bug exited $code: $last (want trace=$want verdict=fail)"; exit 1 ;;
  esac
  echo "found: $bug ($scenario): $(echo "$out" | tail -n 1 | grep -o 'first_failure=[0-9]*') replay ok"
done
echo "acceptance: all sweeps as expected"
