#!/bin/bash
# Run (or resume) a study on the GPU host: one `autotune tune` worker per GPU, sharing one study.
# Cores are split evenly between the workers; each worker's server and load generator share its cores.
# usage: bash scripts/gpu/study.sh STUDY N_TRIALS_PER_WORKER START_TIMEOUT_S [SPACE]
#   e.g. bash scripts/gpu/study.sh qwen3-vl-4b-h100x2 3 280      (as run on 2026-11-25, experiments/gpu-runs/README.md)
# Storage: SQLite in experiments/gpu-runs/STUDY (fine for the workers of one host); give STORAGE=postgresql+psycopg2://...
# and MLFLOW_URI=http://... for workers on several hosts (docs/cluster.md).
set -u
source scripts/gpu/env.sh
STUDY=$1; TRIALS=$2; TIMEOUT=$3; SPACE=${4:-search_spaces/qwen3-vl-4b.yaml}
E=${EXPERIMENTS_DIR:-experiments/gpu-runs}
NGPU=$(nvidia-smi -L | wc -l); PER=$(( NCPU / NGPU ))
extra=()
[ -n "${STORAGE:-}" ] && extra+=(--storage "$STORAGE")
[ -n "${MLFLOW_URI:-}" ] && extra+=(--mlflow-uri "$MLFLOW_URI")
mkdir -p "$E"
pids=()
for (( g = 0; g < NGPU; g++ )); do
  CUDA_VISIBLE_DEVICES=$g taskset -c $(( g * PER ))-$(( g * PER + PER - 1 )) python3 -m autotune.cli tune "$SPACE" --engine vllm \
    --model "$MODEL" --study "$STUDY" --experiments-dir "$E" --n-trials "$TRIALS" --timeout "$TIMEOUT" "${extra[@]}" \
    > "$E/$STUDY-worker$g.log" 2>&1 &
  pids+=($!)
done
wait "${pids[@]}"
python3 -m autotune.cli best "$STUDY" --experiments-dir "$E"
