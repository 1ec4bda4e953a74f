#!/bin/bash
# Both baselines in one device command: `autotune serve` (baseline.sh) and raw `vllm serve` (vllm_raw.sh) with the
# same engine args. On a two-GPU host they run side by side (GPU 0 / GPU 1, separate cores); on one GPU, in turn.
set -u
NGPU=$(nvidia-smi -L | wc -l); NCPU=$(nproc); H=$(( NCPU / 2 ))
if [ "$NGPU" -ge 2 ]; then
  CUDA_VISIBLE_DEVICES=0 PORT=8000 SERVER_CPUS=0-$(( H * 3 / 4 - 1 )) CLIENT_CPUS=$(( H * 3 / 4 ))-$(( H - 1 )) \
    bash scripts/gpu/baseline.sh "$@" > "$OUT/baseline.log" 2>&1 &
  a=$!
  CUDA_VISIBLE_DEVICES=1 PORT=8001 SERVER_CPUS=$H-$(( H + H * 3 / 4 - 1 )) CLIENT_CPUS=$(( H + H * 3 / 4 ))-$(( NCPU - 1 )) \
    bash scripts/gpu/vllm_raw.sh "$@" > "$OUT/vllm-raw.log" 2>&1 &
  b=$!
  wait $a $b
else
  bash scripts/gpu/baseline.sh "$@" > "$OUT/baseline.log" 2>&1
  bash scripts/gpu/vllm_raw.sh "$@" > "$OUT/vllm-raw.log" 2>&1
fi
tail -60 "$OUT/baseline.log"; tail -30 "$OUT/vllm-raw.log"
