#!/usr/bin/env bash
# One sweep as a Slurm job array: task I of N runs `sim sweep --shard I/N` (the I-th of N
# interleaved, disjoint parts of the seed range) on one core, writing its report directory to a
# shared file system; a dependent job merges them.
#
#   SCENARIO=rpc-handoff STRATEGY=pct SEEDS=0..100000000 SHARDS=64 REPORTS=$PWD/reports/sweep \
#     sbatch --array=0-63 deploy/slurm/sweep.sh
#   sbatch --dependency=afterok:<array job id> --wrap "sim merge --out $REPORTS/merged $REPORTS/rpc-handoff/*-shard*"
#
# SIM is the `sim` binary (default: `sim` on PATH; build it with `cargo build --release -p sim`).
#SBATCH --job-name=sim-sweep
#SBATCH --cpus-per-task=1
#SBATCH --mem=2G
#SBATCH --time=24:00:00
#SBATCH --output=sim-sweep-%A-%a.out
set -euo pipefail
: "${SCENARIO:?set SCENARIO}" "${STRATEGY:=random}" "${SEEDS:?set SEEDS, e.g. 0..1000000}"
: "${SHARDS:?set SHARDS to the array size}" "${REPORTS:=reports}" "${SIM:=sim}"
index="${SLURM_ARRAY_TASK_ID:?run as a job array: sbatch --array=0-$((SHARDS - 1))}"
exec "$SIM" sweep --scenario "$SCENARIO" --strategy "$STRATEGY" --seeds "$SEEDS" \
  --shard "$index/$SHARDS" --jobs 1 --reports "$REPORTS"
