#!/bin/bash
# Issue 20's device items as device commands (after staging, docs/quickstart-gpu.md): installs the staged packages,
# records the host, freezes a copy of the tree (later commands re-send the tree) and starts, detached and bounded by
# the lease:
#   1. tests/gpu/test_gpu_engine_death.py: an OOM start and an engine core SIGKILLed mid-window, each inside a real
#      `autotune tune` trial, then the next trial on the same GPU (record: engine-death/engine-death.json);
#   2. scripts/gpu/sustained.py with SOAK_CONFIG: the best config soaked at SOAK_RATE for the time left
#      (best/soak/soak.json and soak.png). NEXT lists what follows instead, in order: `soak`, `soak-mmap` (the same
#      soak of CONFIG with `env: {MALLOC_MMAP_THRESHOLD_: MMAP_THRESHOLD}` added: glibc mmaps blocks from that size up
#      and unmaps them on free instead of keeping them in the C heap; `autotune serve` sets 131072 for vLLM by default
#      (serving.start_env), so this step is for another value; best-mmap.yaml, best-mmap/soak/; give SOAK_MAX_S to
#      leave time for both), `limits` (issue 19's
#      tests/gpu/test_gpu_limits.py: limits/limits.json, limits.md), `trial-cost` (issue 17's study,
#      scripts/gpu/trial_cost_study.sh: TRIALS, WARM_START, FORK_ENGINE_CORES as for trial_cost.sh).
# Then `bash scripts/gpu/wait_pack.sh /root/sustained S` in this and each following command brings back what it has.
# usage: SOAK_RATE=59.6 bash scripts/gpu/reliability.sh CONFIG.yaml
#        SOAK_ONLY=1 NEXT='soak-mmap soak' SOAK_MAX_S=540 SOAK_RATE=59.6 bash scripts/gpu/reliability.sh CONFIG.yaml
#        DEATH_OOM=0 DEATH_EAGER=1 NEXT='limits trial-cost' FORK_ENGINE_CORES=1 bash scripts/gpu/reliability.sh CONFIG.yaml
#   LEASE_LEFT: device seconds left; else LEASE_BUDGET (the session's device seconds when the machine was asked for,
#   `status`'s budget_left_s; default 1800) less the machine's uptime
set -u
CONFIG=$1
RUN=/root/sustained
source scripts/gpu/prepare_run.sh
SOAK_ONLY=${SOAK_ONLY:-0}   # 1: the soak alone (a lease too short for both)
DEATH_OOM=${DEATH_OOM:-1}   # 0: the engine-death test without its OOM start (steps 1-3 only)
DEATH_EAGER=${DEATH_EAGER:-0}   # 1: its servers with enforce_eager (shorter starts, for a short lease)
MMAP_THRESHOLD=${MMAP_THRESHOLD:-131072}   # the soak-mmap step's MALLOC_MMAP_THRESHOLD_ (bytes; fixed, so glibc no longer raises it)
NEXT=${NEXT:-soak}   # what follows the engine-death test, in order: soak, limits (issue 19), trial-cost (issue 17)
export -f pack_compile_cache
export RUN CONFIG SOAK_RATE SOAK_ONLY MMAP_THRESHOLD DEATH_OOM DEATH_EAGER NEXT TRIALS WARM_START FORK_ENGINE_CORES STUDY
setsid nohup bash -c '
  say() { echo "$(date +%H:%M:%S) $*" | tee -a "$RUN/progress.log"; }
  if [ "$SOAK_ONLY" != 1 ]; then
    say "engine-death test: starting"
    AUTOTUNE_GPU_MODEL=$MODEL AUTOTUNE_GPU_RECORD_DIR=$RUN/engine-death AUTOTUNE_GPU_DEATH_OOM=$DEATH_OOM \
      AUTOTUNE_GPU_DEATH_EAGER=$DEATH_EAGER \
      timeout $(( DEADLINE_EPOCH - $(date +%s) )) python3 -m pytest tests/gpu/test_gpu_engine_death.py -q -o addopts="" \
      -p no:cacheprovider -m gpu -rA > "$RUN/engine-death.log" 2>&1
    say "engine-death test: exit $? ($(tail -1 "$RUN/engine-death.log"))"
  fi
  for step in $NEXT; do
    case $step in
      soak) SERVER_CPUS=0-9 CLIENT_CPUS=10-15 RUN_DIR=$RUN SOAK_CONFIG=best ENGINE_KILL=0 MIN_LEFT_TO_START_S=400 MARK_DONE=0 \
              python3 scripts/gpu/sustained.py "best=$CONFIG:0:0" >> "$RUN/run.log" 2>&1 ;;
      soak-mmap)  # the setting in the config: `autotune serve` applies it to the whole tree (serving/start_env.py)
        python3 -c "import sys; from autotune.config import load_tuned_config as load; t = load(sys.argv[1]); \
t.engine_config.env[\"MALLOC_MMAP_THRESHOLD_\"] = sys.argv[3]; t.write(sys.argv[2])" "$CONFIG" "$RUN/best-mmap.yaml" "$MMAP_THRESHOLD"
        SERVER_CPUS=0-9 CLIENT_CPUS=10-15 RUN_DIR=$RUN SOAK_CONFIG=best-mmap ENGINE_KILL=0 MIN_LEFT_TO_START_S=400 MARK_DONE=0 \
          python3 scripts/gpu/sustained.py "best-mmap=$RUN/best-mmap.yaml:0:0" >> "$RUN/run.log" 2>&1 ;;
      trial-cost) bash scripts/gpu/trial_cost_study.sh ;;
      limits)
        say "limit table test: starting"
        AUTOTUNE_GPU_MODEL=$MODEL AUTOTUNE_GPU_RECORD_DIR=$RUN/limits timeout $(( DEADLINE_EPOCH - $(date +%s) )) \
          python3 -m pytest tests/gpu/test_gpu_limits.py -q -o addopts="" -p no:cacheprovider -m gpu -rA \
          > "$RUN/limits-test.log" 2>&1
        say "limit table test: exit $? ($(tail -1 "$RUN/limits-test.log"))" ;;
      *) say "unknown step $step (soak, soak-mmap, trial-cost, limits)" ;;
    esac
  done
  pack_compile_cache "$RUN/compile-cache.tar.xz" >> "$RUN/progress.log"
  touch "$RUN/done"; say "all done"
' > /dev/null 2>&1 < /dev/null &
echo $! > "$RUN/pid"   # scripts/gpu/wait_pack.sh stops waiting once this process has gone
echo "started; deadline in $(( DEADLINE_EPOCH - $(date +%s) )) s"
