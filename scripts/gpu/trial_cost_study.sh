#!/bin/bash
# Issue 17's one-GPU study, the part that runs detached (started by trial_cost.sh, or by reliability.sh after the
# engine-death test with NEXT=trial-cost), from the frozen tree with the GPU environment (prepare_run.sh, env.sh):
#   `autotune tune search_spaces/qwen3-vl-4b.yaml` (trial 0 is vLLM's defaults) with --warm-start unless WARM_START=0,
#   one compile cache (prepare_run.sh restored the carried one) and --stack-profile-hz 10
#   (each start profiled), until TRIALS trials or DEADLINE_EPOCH; then `autotune summarize trial-cost` into
#   $RUN/summary.json and the stack-profile tables ($RUN/stack-profiles); the script that started it packs the compile
#   cache for the next lease ($RUN/compile-cache.tar.xz). FORK_ENGINE_CORES=1: VLLM_WORKER_MULTIPROC_METHOD=fork for every trial server, so that
#   vLLM forks its engine cores from the (warm) API server instead of spawning fresh interpreters.
# Needs RUN, DEADLINE_EPOCH, MODEL, SERVER_CPUS, CLIENT_CPUS, VLLM_CACHE_ROOT; ENGINE=simulated: a smoke test without a GPU.
set -u
say() { echo "$(date +%H:%M:%S) $*" | tee -a "$RUN/progress.log"; }
TRIALS=${TRIALS:-20}
STUDY=${STUDY:-trial-cost}
WARM=$([ "${WARM_START:-1}" = 1 ] && echo --warm-start)
[ "${FORK_ENGINE_CORES:-0}" = 1 ] && export VLLM_WORKER_MULTIPROC_METHOD=fork
left=$(( DEADLINE_EPOCH - $(date +%s) ))
say "study $STUDY: up to $TRIALS trials ${WARM:-(cold starts)}, engine cores ${VLLM_WORKER_MULTIPROC_METHOD:-spawned}, $left s left"
timeout -k 15 -s TERM $left python3 -m autotune.cli tune search_spaces/qwen3-vl-4b.yaml --engine "${ENGINE:-vllm}" --model "$MODEL" \
  --study "$STUDY" --experiments-dir "$RUN/experiments" --n-trials "$TRIALS" --timeout $(( left - 60 )) $WARM \
  --stack-profile-hz 10 --server-cpus "$SERVER_CPUS" --client-cpus "$CLIENT_CPUS" > "$RUN/tune.log" 2>&1
say "tune: exit $?"
python3 -m autotune.cli summarize trial-cost "$RUN/experiments/$STUDY" --gpus 1 --output "$RUN/summary.json" \
  > /dev/null 2> "$RUN/summary.err" && say "summary: $(tr -d "\n" < "$RUN/summary.json" | cut -c1-400)"
python3 -m autotune.cli report "$STUDY" --experiments-dir "$RUN/experiments" --stack-profiles \
  --output "$RUN/stack-profiles" > /dev/null 2>&1
