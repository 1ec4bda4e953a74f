#!/bin/bash
# Issue 17's study on one GPU as device commands (after staging, docs/quickstart-gpu.md): installs the staged
# packages, records the host, freezes a copy of the tree and starts, detached and bounded by the lease:
#   `autotune tune search_spaces/qwen3-vl-4b.yaml` (trial 0 is vLLM's defaults) with --warm-start, one compile cache
#   (restored from .compile-cache/compile-cache.tgz when that was carried) and --stack-profile-hz (each start
#   profiled: where its time goes), until TRIALS trials or the lease's end; then `autotune summarize trial-cost` into
#   $RUN/summary.json, the stack-profile tables, and the compile cache packed for the next lease ($RUN/compile-cache.tgz).
# Then `bash scripts/gpu/wait_pack.sh /root/sustained S` in this and each following command brings back what it has.
# usage: TRIALS=20 LEASE_BUDGET=1800 bash scripts/gpu/trial_cost.sh      (WARM_START=0: cold starts, the old path)
#   FORK_ENGINE_CORES=1: VLLM_WORKER_MULTIPROC_METHOD=fork for every trial server, so that vLLM forks its engine
#   cores from the (warm) API server instead of spawning fresh interpreters (`vllm serve` sets spawn otherwise)
set -u
RUN=/root/sustained
source scripts/gpu/prepare_run.sh
LEASE_LEFT=${LEASE_LEFT:-$(( ${LEASE_BUDGET:-1800} - $(cut -d. -f1 /proc/uptime) - 90 ))}   # the lease began before the boot
export DEADLINE_EPOCH=$(( $(date +%s) + LEASE_LEFT - 110 ))                # room to pack and bring the files back
echo "$DEADLINE_EPOCH" > "$RUN/deadline"
CARRIED_CACHE=.compile-cache/compile-cache.tgz
if [ -f "$CARRIED_CACHE" ]; then
  mkdir -p "$VLLM_CACHE_ROOT" && tar xzf "$CARRIED_CACHE" -C "$VLLM_CACHE_ROOT" && echo "compile cache restored from $CARRIED_CACHE"
fi
[ "${FORK_ENGINE_CORES:-0}" = 1 ] && export VLLM_WORKER_MULTIPROC_METHOD=fork
export RUN TRIALS=${TRIALS:-20} STUDY=${STUDY:-trial-cost} WARM=$([ "${WARM_START:-1}" = 1 ] && echo --warm-start)
setsid nohup bash -c '
  say() { echo "$(date +%H:%M:%S) $*" | tee -a "$RUN/progress.log"; }
  say "study $STUDY: up to $TRIALS trials ${WARM:-(cold starts)}, engine cores ${VLLM_WORKER_MULTIPROC_METHOD:-spawned}"
  left=$(( DEADLINE_EPOCH - $(date +%s) ))
  timeout -k 15 -s TERM $left python3 -m autotune.cli tune search_spaces/qwen3-vl-4b.yaml --engine vllm --model "$MODEL" \
    --study "$STUDY" --experiments-dir "$RUN/experiments" --n-trials "$TRIALS" --timeout $(( left - 60 )) $WARM \
    --stack-profile-hz 10 --server-cpus "$SERVER_CPUS" --client-cpus "$CLIENT_CPUS" > "$RUN/tune.log" 2>&1
  say "tune: exit $?"
  python3 -m autotune.cli summarize trial-cost "$RUN/experiments/$STUDY" --gpus 1 --output "$RUN/summary.json" \
    > /dev/null 2> "$RUN/summary.err" && say "summary: $(tr -d "\n" < "$RUN/summary.json" | cut -c1-400)"
  python3 -m autotune.cli report "$STUDY" --experiments-dir "$RUN/experiments" --stack-profiles \
    --output "$RUN/stack-profiles" > /dev/null 2>&1
  (cd "$VLLM_CACHE_ROOT" && tar czf "$RUN/compile-cache.tgz" torch_compile_cache $(ls -d modelinfos 2>/dev/null))
  touch "$RUN/done"; say "all done"
' > /dev/null 2>&1 < /dev/null &
echo $! > "$RUN/pid"   # scripts/gpu/wait_pack.sh stops waiting once this process has gone
echo "started; deadline in $(( DEADLINE_EPOCH - $(date +%s) )) s"
