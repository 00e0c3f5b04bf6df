#!/usr/bin/env bash
# Runs one fuzz target (or, with `all`, every target in turn) for SECONDS, with the settings
# each target needs; used by the test command's smoke run, the nightly workflow and by hand:
#
#   scripts/fuzz.sh TARGET|all SECONDS [libFuzzer flags...]
#
# - Corpus: fuzz/corpus/TARGET (kept between runs), plus the checked-in seed inputs
#   (fuzz/seeds/TARGET) and every past crash (fuzz/regressions/TARGET), which must stay clean.
# - scenario_bytes: starts from real runs' decision streams (fuzz/src/bin/seed_corpus.rs) and
#   lets inputs grow to whole runs (-max_len, -len_control=0).
# - cell_module: starts from the compiled test cells (fuzz/src/bin/cell_seeds.rs).
# - rpc_hostile_peer: built with debug assertions, so the RPC engine checks its own
#   bookkeeping after every step while a hostile peer drives it.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
target="${1:?usage: scripts/fuzz.sh TARGET|all SECONDS [libFuzzer flags...]}"
seconds="${2:?usage: scripts/fuzz.sh TARGET|all SECONDS [libFuzzer flags...]}"
shift 2
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --version 0.13.2 --locked
fi
run_one() {
  local t=$1
  shift
  local build=(--sanitizer none)
  local flags=(-max_total_time="$seconds" -print_final_stats=1)
  local dirs=("corpus/$t")
  mkdir -p "corpus/$t"
  [ -d "seeds/$t" ] && dirs+=("seeds/$t")
  [ -d "regressions/$t" ] && dirs+=("regressions/$t")
  case "$t" in
    scenario_bytes)
      if [ -z "$(ls -A "corpus/$t")" ]; then
        cargo run --quiet --release --bin seed_corpus -- "corpus/$t" 2
      fi
      flags+=(-max_len=65536 -len_control=0)
      ;;
    rpc_hostile_peer)
      build+=(--debug-assertions)
      ;;
    cell_module)
      # Without debug assertions, as the host ships: wasmi's translator asserts, in debug
      # builds only, things its validator reports as errors a moment later.
      build+=(-O)
      if [ -z "$(ls -A "corpus/$t")" ]; then
        cargo run --quiet --release --bin cell_seeds -- "corpus/$t"
      fi
      ;;
  esac
  echo "-- fuzz $t for ${seconds}s"
  cargo fuzz run "${build[@]}" "$t" "${dirs[@]}" -- "${flags[@]}" "$@"
}
if [ "$target" = all ]; then
  for t in $(cargo fuzz list); do
    run_one "$t" "$@" 2>&1 | tail -n 30
  done
else
  run_one "$target" "$@"
fi
