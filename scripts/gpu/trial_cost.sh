#!/bin/bash
# Issue 17's study on one GPU as device commands (after staging, docs/quickstart-gpu.md): installs the staged
# packages, records the host, freezes a copy of the tree and starts scripts/gpu/trial_cost_study.sh detached and
# bounded by the lease (`autotune tune` of the reference space with --warm-start, the carried compile cache and start
# profiles, until TRIALS trials or the lease's end; then its summary.json, stack-profile tables and compile cache).
# Then `bash scripts/gpu/wait_pack.sh /root/sustained S` in this and each following command brings back what it has.
# usage: TRIALS=20 LEASE_BUDGET=1800 bash scripts/gpu/trial_cost.sh      (WARM_START=0: cold starts, the old path)
#   FORK_ENGINE_CORES=1: vLLM forks its engine cores from the (warm) API server (`vllm serve` spawns them otherwise)
set -u
RUN=/root/sustained
source scripts/gpu/prepare_run.sh
export RUN TRIALS WARM_START FORK_ENGINE_CORES STUDY
export -f pack_compile_cache
setsid nohup bash -c 'bash scripts/gpu/trial_cost_study.sh
  pack_compile_cache "$RUN/compile-cache.tar.xz" >> "$RUN/progress.log"
  touch "$RUN/done"; echo "$(date +%H:%M:%S) all done" >> "$RUN/progress.log"' \
  > /dev/null 2>&1 < /dev/null &
echo $! > "$RUN/pid"   # scripts/gpu/wait_pack.sh stops waiting once this process has gone
echo "started; deadline in $(( DEADLINE_EPOCH - $(date +%s) )) s"
