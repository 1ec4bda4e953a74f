#!/bin/bash
# Issue 6's reference study on the GPU host, in three device commands of < 600 s each (after staging, README "GPU"):
#   bash scripts/gpu/reference.sh a   # GPU 0: autotune serve (vLLM defaults) measured by autotune bench and by
#                                     #   vllm bench serve (agreement, c16/c128/c256), and its slo_rate + CPU profile;
#                                     # GPU 1: raw vllm serve, same args, same autotune bench runs (serving overhead);
#                                     # then each GPU runs a study worker until the step's budget
#   bash scripts/gpu/reference.sh b   # both GPUs: study workers (the study resumes from its storage)
#   bash scripts/gpu/reference.sh c   # defaults (GPU 0) vs the study's best.yaml (GPU 1) over concurrency and at the
#                                     #   highest rate within the SLO; then the 2-GPU tensor-parallel grid
# Or, with study workers that outlive the device commands (no trial cut at a command's end):
#   WORKERS_S=1100 bash scripts/gpu/reference.sh agree  # GPU 0: the c16 agreement (A B B A); every other GPU starts a
#                                     #   detached study worker at once, GPU 0 after the agreement; all stop starting
#                                     #   trials WORKERS_S after this step began
#   WORKERS_S=1100 bash scripts/gpu/reference.sh workers  # the same without the agreement: workers on every GPU
#                                     #   (CONFIRM=N: GPU 0's worker queues N repeats of best and defaults, --confirm)
#                                     #   (STACK_PROFILE_HZ=25: every trial's server processes sample their Python
#                                     #   stacks in the measured windows, trials/N/stack_profile.json;
#                                     #   SECOND_SPACE=search_spaces/X.yaml [SECOND_STUDY=name]: the other GPUs run that
#                                     #   study first, then the main one)
#   bash scripts/gpu/reference.sh wait   # waits for the detached workers (at most this command's budget)
#   bash scripts/gpu/reference.sh tp     # waits for them, then the 2-GPU tensor-parallel grid (TP 2 first)
# Each GPU gets its share of the cores: the server 3/4 of it, the load generator the rest (taskset; recorded per
# trial). The study lives in $EXP (kept while the machine stays warm; restored from the checkout otherwise) and
# every step packs $EXP into $OUT/step-X.tgz (SAVE_COMPILE_CACHE=1: vLLM's compile cache as well, to carry into the
# next session as .compile-cache/compile-cache.tar.xz; DUMP_WARMUP_STACKS=1: stacks of the API servers during vLLM's
# multimodal warm-up in the server logs). ENGINE=simulated runs the same flow without a GPU (a smoke test:
# raw vllm serve and vllm bench are skipped, results are labeled simulated).
set -u
source scripts/gpu/env.sh
STEP=$1; BUDGET_S=${BUDGET_S:-560}; T0=$SECONDS
ENGINE=${ENGINE:-vllm}
# qwen3-vl-4b-reference-v2: the space with slo_rate_above and the encoder's CUDA graphs (2026-11-26b). The first
# study, qwen3-vl-4b-reference (18 trials), resumes only from the space as of commit d7ec6c0:
#   git show d7ec6c0:search_spaces/qwen3-vl-4b.yaml > search_spaces/_ref1.yaml  # beside it: its relative paths
#   STUDY=qwen3-vl-4b-reference SPACE=search_spaces/_ref1.yaml bash scripts/gpu/reference.sh workers
STUDY=${STUDY:-qwen3-vl-4b-reference-v2}; SPACE=${SPACE:-search_spaces/qwen3-vl-4b.yaml}
EXP=${EXP:-/root/exp}; M=$EXP/measurements; mkdir -p "$M"
# SESSION_LEFT_S (the device time left as this step starts) bounds this and every later step, so that the last
# one packs its results before the device's time is spent
# LEASE_S (the session's device time, e.g. 1800) bounds it too, counted from the machine's boot (/proc/uptime; the
# lease began a little earlier, LEASE_MARGIN_S covers that and the last pack): whichever ends first
if [ -n "${LEASE_S:-}" ]; then
  up=$(cut -d. -f1 /proc/uptime); by_lease=$(( LEASE_S - up - ${LEASE_MARGIN_S:-150} ))
  echo "machine up $up s: the lease leaves about $by_lease s"
  if [ -z "${SESSION_LEFT_S:-}" ] || (( by_lease < SESSION_LEFT_S )); then SESSION_LEFT_S=$by_lease; fi
fi
[ -n "${SESSION_LEFT_S:-}" ] && echo $(( $(date +%s) + SESSION_LEFT_S )) > "$EXP/session.end"
if [ -f "$EXP/session.end" ]; then
  until_end=$(( $(cat "$EXP/session.end") - $(date +%s) - 20 ))
  (( until_end < BUDGET_S )) && { BUDGET_S=$until_end; echo "the session's device time bounds this step to $BUDGET_S s"; }
fi
DEFAULTS=${DEFAULTS:-experiments/gpu-configs/qwen3-vl-4b-defaults.yaml}
NGPU=${NGPU:-$(nvidia-smi -L 2>/dev/null | wc -l)}; (( NGPU >= 1 )) || NGPU=1
PER=$(( NCPU / NGPU ))
server_cpus() { echo "$(( $1 * PER ))-$(( $1 * PER + PER * 3 / 4 - 1 ))"; }
client_cpus() { echo "$(( $1 * PER + PER * 3 / 4 ))-$(( $1 * PER + PER - 1 ))"; }
left() { echo $(( BUDGET_S - (SECONDS - T0) )); }
TRIAL_S=${TRIAL_S:-230}   # the longest trial expected: workers start no trial later than this before the end
SLO=(--slo ttft_ms=2000 --slo tpot_ms=50)

# A fresh machine resumes the study from its latest recording that kept its Optuna store (optuna.db.xz, as
# `autotune pack` stores it): experiments/h100-qwen3-vl-4b/study/ (2026-11-25) or a dated run folder
# experiments/h100-qwen3-vl-4b/YYYY-MM-DD/study/ (the latest date wins); RESTORE overrides.
has_store() { [ -f "$1/optuna.db" ] || [ -f "$1/optuna.db.xz" ]; }
restore_study() {  # restore_study FROM_DIR STUDY: copy the recorded study into $EXP with its store unpacked
  cp -r "$1/$2" "$EXP/"
  if [ -f "$EXP/$2/optuna.db.xz" ]; then xz -d "$EXP/$2/optuna.db.xz"; fi
}
if [ -z "${RESTORE:-}" ]; then
  for d in experiments/h100-qwen3-vl-4b/study experiments/h100-qwen3-vl-4b/20*/study; do has_store "$d/$STUDY" && RESTORE=$d; done
fi
# A study's trials are comparable only on one GPU model: on another one the workers start a study of its own.
recorded_gpu() {  # recorded_gpu STUDY_DIR: the GPU of the study's first measured trial (from its result.json[.gz])
  python3 - "$1" <<'PY'
import gzip, json, pathlib, sys
for path in sorted(pathlib.Path(sys.argv[1]).glob("trials/*/result.json*"), key=lambda p: int(p.parent.name)):
    text = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    gpus = json.loads(text).get("hardware", {}).get("gpus") or []
    if gpus:
        print(gpus[0]); break
PY
}
if [ "$ENGINE" = vllm ] && [ -n "${RESTORE:-}" ] && [ -d "$RESTORE/$STUDY" ]; then
  was=$(recorded_gpu "$RESTORE/$STUDY"); now=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
  if [ -n "$was" ] && [ -n "$now" ] && [ "$was" != "$now" ]; then
    STUDY="$STUDY-$(echo "$now" | tr 'A-Z ' 'a-z-' | sed 's/^nvidia-//')"
    echo "study measured on $was, this host has $now: trials go to a study of their own, $STUDY"
  fi
fi
if [ ! -d "$EXP/$STUDY" ] && [ -n "${RESTORE:-}" ] && [ -d "$RESTORE/$STUDY" ]; then
  echo "resuming study $STUDY from $RESTORE"
  restore_study "$RESTORE" "$STUDY"
fi
if [ -n "${SECOND_SPACE:-}" ]; then  # the other GPUs' first study resumes from its latest recording too
  SECOND_STUDY=${SECOND_STUDY:-$(basename "$SECOND_SPACE" .yaml)}
  for d in experiments/h100-qwen3-vl-4b/20*/study; do has_store "$d/$SECOND_STUDY" && SECOND_RESTORE=$d; done
  if [ ! -d "$EXP/$SECOND_STUDY" ] && [ -n "${SECOND_RESTORE:-}" ]; then
    echo "resuming study $SECOND_STUDY from $SECOND_RESTORE"; restore_study "$SECOND_RESTORE" "$SECOND_STUDY"
  fi
fi

worker() {  # worker GPUS SPACE STUDY SERVER_CPUS CLIENT_CPUS: a study worker until the step's budget
  local gpus=$1 space=$2 study=$3 scpus=$4 ccpus=$5 t
  t=$(( $(left) - TRIAL_S ))
  if (( t < 20 )); then echo "no time left for a trial on GPU $gpus ($(left) s)"; return; fi
  echo "$(date -u +%T) worker GPU $gpus: $study, starting trials for $t s (server cpus $scpus, client cpus $ccpus)"
  CUDA_VISIBLE_DEVICES=$gpus timeout -k 15 -s TERM $(( $(left) - 5 )) python3 -m autotune.cli tune "$space" --engine "$ENGINE" \
    --model "$MODEL" --study "$study" --experiments-dir "$EXP" --n-trials 100 --timeout "$t" \
    --server-cpus "$scpus" --client-cpus "$ccpus"
  echo "$(date -u +%T) worker GPU $gpus done (rc $?)"
}

serve() {  # serve NAME CONFIG|raw PORT SERVER_CPUS: start a server in the background; sets SPID (its pid)
  local name=$1 config=$2 port=$3 cpus=$4
  local t0=$SECONDS
  if [ "$config" = raw ]; then  # raw vllm serve with exactly the args autotune serve passes (one translation)
    local args
    args=$(python3 -c "
import shlex, sys
from autotune.config import load_tuned_config
c = load_tuned_config(sys.argv[1]).engine_config
print(shlex.join([c.model, *c.to_vllm_cli_args()]))" "$DEFAULTS")
    echo "vllm serve $args"
    eval setsid taskset -c "$cpus" python3 -m vllm.entrypoints.cli.main serve $args --port "$port" > "$M/serve-$name.log" 2>&1 &
  else
    setsid taskset -c "$cpus" python3 -m autotune.cli serve --config "$config" --engine "$ENGINE" --port "$port" > "$M/serve-$name.log" 2>&1 &
  fi
  SPID=$!
  wait_ready "http://127.0.0.1:$port" "$SPID" 420 || { tail -30 "$M/serve-$name.log"; return 1; }
  echo "startup_s=$(( SECONDS - t0 ))" | tee "$M/startup-$name.txt"
}

vllm_bench() {  # vllm_bench PORT CPUS ARGS...: vllm bench serve on random-mm shaped like vlm-chat-random-mm
  local port=$1 cpus=$2; shift 2
  [ "$ENGINE" = vllm ] || return 0
  taskset -c "$cpus" python3 -m vllm.entrypoints.cli.main bench serve --backend openai-chat --endpoint /v1/chat/completions \
    --port "$port" --model q --tokenizer "$MODEL" --dataset-name random-mm --random-mm-base-items-per-request 1 \
    --random-mm-limit-mm-per-prompt '{"image":1,"video":0}' --random-mm-bucket-config '{(448,448,1):1.0}' \
    --random-input-len 64 --random-output-len 128 --ignore-eos --save-result --result-dir "$M" "$@" 2>&1 \
    | grep -E "Request throughput|Median TTFT|P99 TTFT|Median TPOT|Successful"
}

measure_loads() {  # measure_loads NAME PORT CPUS WORKLOAD: autotune bench at 16/128/256 (fresh requests per run)
  local name=$1 port=$2 cpus=$3 workload=$4 c
  for c in 16 128 256; do
    taskset -c "$cpus" python3 -m autotune.cli bench --url "http://127.0.0.1:$port" --workload "$workload" --quiet "${SLO[@]}" \
      --concurrency $c --num-requests $(( c < 64 ? 400 : c * 8 )) --warmup $(( c < 32 ? 32 : c )) --seed $c \
      --server-pid "$SPID" --output "$M/bench-$name-c$c.json.gz" | grep -E "throughput req/s|TTFT ms|GPU util|CPU by role" | head -4
    if [ "$name" = autotune-serve ]; then  # vllm bench serve at the same load: one process at 16, 64 per process above
      local procs=$(( c / 64 )) k pids=()
      if (( procs < 1 )); then  # A B B A: ours (above), vllm, vllm, ours; the spread per client is the run-to-run noise
        vllm_bench "$port" "$cpus" --num-prompts 400 --max-concurrency 16 --seed 16 --result-filename vllm-bench-c16.json
        vllm_bench "$port" "$cpus" --num-prompts 400 --max-concurrency 16 --seed 1016 --result-filename vllm-bench-c16-r2.json
        taskset -c "$cpus" python3 -m autotune.cli bench --url "http://127.0.0.1:$port" --workload "$workload" --quiet "${SLO[@]}" \
          --concurrency 16 --num-requests 400 --warmup 32 --seed 2016 --server-pid "$SPID" \
          --output "$M/bench-$name-c16-r2.json.gz" | grep -E "throughput req/s|TTFT ms" | head -2
      else
        for (( k = 0; k < procs; k++ )); do
          vllm_bench "$port" "$cpus" --num-prompts 512 --max-concurrency 64 --seed $(( c * 10 + k )) \
            --result-filename "vllm-bench-c$c-p$k.json" > "$M/vllm-bench-c$c-p$k.txt" &
          pids+=($!)
        done
        wait "${pids[@]}"; cat "$M"/vllm-bench-c$c-p*.txt
      fi
    fi
  done
}

slo_rate() {  # slo_rate NAME PORT CPUS SEED: the study's objective, measured outside the study
  taskset -c "$3" python3 -m autotune.cli bench --url "http://127.0.0.1:$2" --workload vlm-chat --quiet "${SLO[@]}" \
    --slo-rate --concurrency 256 --duration 8 --warmup 32 --seed "$4" --server-pid "$SPID" --output "$M/slo-rate-$1.json.gz" \
    | grep -E "highest rate|GPU util|CPU by role|engine_core|api_server|other" | head -8
}

stop_server() {  # the whole process group (vLLM's engine core outlived its parent on 2026-11-25), then the GPU memory
  kill -TERM -- -"$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null
  local t0=$SECONDS
  while [ "$ENGINE" = vllm ] && (( SECONDS - t0 < 60 )); do
    local used; used=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i "${CUDA_VISIBLE_DEVICES:-0}" | sort -n | tail -1)
    (( used < 2048 )) && break
    sleep 1
  done
}

CACHE_DIR=$VLLM_CACHE_ROOT/torch_compile_cache
source scripts/gpu/compile_cache.sh
[ -d "$CACHE_DIR" ] || restore_compile_cache  # warm starts from the first trial (same vLLM, sm_90)
if [ "${DUMP_WARMUP_STACKS:-0}" = 1 ]; then  # stacks of vLLM's API servers during their multimodal warm-up only
  export AUTOTUNE_DUMP_STACKS_EVERY_S=2 AUTOTUNE_DUMP_STACKS_DURING=vllm.renderers.base:BaseRenderer._warmup_mm_processor
fi

pack() {  # the step's results; with SAVE_COMPILE_CACHE=1 also the compile cache (for the next session's carry);
  # PACK=0: none (a later `bash scripts/gpu/pack_out.sh` packs the whole run in parts small enough to come back)
  du -sm "$CACHE_DIR" > "$M/compile-cache-size.txt" 2>/dev/null
  [ "${PACK:-1}" = 1 ] || return 0
  tar czf "$OUT/step-$STEP.tgz" -C "$EXP" .
  [ "${SAVE_COMPILE_CACHE:-0}" = 1 ] && COMPILE_CACHE_MAX_MB=45 pack_compile_cache "$OUT/compile-cache.tar.xz"
  ls -la "$OUT"
}

gpu_of() { echo $(( $1 < NGPU ? $1 : NGPU - 1 )); }

step_a() {
  record_env "$M/env.json"; nproc > "$M/nproc.txt"; nvidia-smi topo -m > "$M/topo.txt" 2>&1
  local g0=0 g1; g1=$(gpu_of 1)
  (
    export CUDA_VISIBLE_DEVICES=$g0   # the server and NVML telemetry see this GPU only
    echo "== GPU $g0: autotune serve, vLLM defaults"
    serve autotune-serve "$DEFAULTS" 8000 "$(server_cpus $g0)" || exit 1
    curl -s 127.0.0.1:8000/autotune/config > "$M/autotune-config-defaults.json"
    python3 scripts/gpu/stream_chat.py http://127.0.0.1:8000 > "$M/stream-chat-autotune-serve.txt" 2>&1; tail -3 "$M/stream-chat-autotune-serve.txt"
    measure_loads autotune-serve 8000 "$(client_cpus $g0)" vlm-chat-random-mm
    slo_rate autotune-serve-defaults 8000 "$(client_cpus $g0)" 999
    stop_server
    worker $g0 "$SPACE" "$STUDY" "$(server_cpus $g0)" "$(client_cpus $g0)"
  ) > "$M/a-gpu$g0.log" 2>&1 &
  local a=$!
  if (( NGPU > 1 )) && [ "$ENGINE" = vllm ]; then
    (
      export CUDA_VISIBLE_DEVICES=$g1
      echo "== GPU $g1: raw vllm serve, the same engine args"
      serve vllm-serve raw 8001 "$(server_cpus $g1)" || exit 1
      measure_loads vllm-serve 8001 "$(client_cpus $g1)" vlm-chat-random-mm
      slo_rate vllm-serve-defaults 8001 "$(client_cpus $g1)" 999
      stop_server
      worker $g1 "$SPACE" "$STUDY" "$(server_cpus $g1)" "$(client_cpus $g1)"
    ) > "$M/a-gpu$g1.log" 2>&1 &
    wait $!
  fi
  wait $a
  tail -n 40 "$M"/a-gpu*.log
}

step_b() {
  local g pids=()
  for (( g = 0; g < NGPU; g++ )); do
    worker $g "$SPACE" "$STUDY" "$(server_cpus $g)" "$(client_cpus $g)" > "$M/b-gpu$g.log" 2>&1 &
    pids+=($!)
  done
  wait "${pids[@]}"; tail -n 25 "$M"/b-gpu*.log
}

step_c() {
  python3 -m autotune.cli best "$STUDY" --experiments-dir "$EXP" > "$M/best.txt" 2>&1; head -40 "$M/best.txt"
  local best="$EXP/$STUDY/best.yaml" g1; g1=$(gpu_of 1)
  compare() {  # compare NAME CONFIG GPU PORT
    local name=$1 config=$2 g=$3 port=$4 c
    export CUDA_VISIBLE_DEVICES=$g
    serve "$name" "$config" "$port" "$(server_cpus $g)" || return 1
    curl -s "127.0.0.1:$port/autotune/config" > "$M/autotune-config-$name.json"
    for c in 64 128 256; do
      taskset -c "$(client_cpus $g)" python3 -m autotune.cli bench --url "http://127.0.0.1:$port" --workload vlm-chat --quiet \
        "${SLO[@]}" --concurrency $c --duration 8 --warmup $(( c / 2 )) --seed $(( 5000 + c )) --server-pid "$SPID" \
        --output "$M/compare-$name-c$c.json.gz" | grep -E "throughput req/s|GPU util" | head -2
    done
    slo_rate "compare-$name" "$port" "$(client_cpus $g)" 5999
    stop_server
  }
  if (( NGPU > 1 )); then
    compare defaults "$DEFAULTS" 0 8000 > "$M/c-defaults.log" 2>&1 &
    local a=$!
    [ -f "$best" ] && compare best "$best" "$g1" 8001 > "$M/c-best.log" 2>&1
    wait $a
  else
    compare defaults "$DEFAULTS" 0 8000 > "$M/c-defaults.log" 2>&1
    [ -f "$best" ] && compare best "$best" 0 8000 > "$M/c-best.log" 2>&1
  fi
  cat "$M"/c-*.log
  if (( NGPU > 1 )); then  # one worker over both GPUs: tensor_parallel_size 1 or 2
    worker "0,1" search_spaces/qwen3-vl-4b-2gpu.yaml qwen3-vl-4b-2gpu "$(server_cpus 0),$(server_cpus 1)" "$(client_cpus 0)" \
      > "$M/c-tp.log" 2>&1
    tail -n 25 "$M/c-tp.log"
  fi
}

DEADLINE_FILE=$EXP/workers.deadline   # epoch seconds by which the detached workers have stopped

detached_worker() {  # detached_worker GPU: a study worker in its own session (scripts/gpu/worker.sh), ending by the deadline
  local g=$1 now deadline extra="" pairs=("$SPACE:$STUDY")
  now=$(date +%s); deadline=$(cat "$DEADLINE_FILE")
  if (( deadline - now - TRIAL_S < 20 )); then echo "no time left for a trial on GPU $g"; return; fi
  (( g == 0 )) && [ -n "${CONFIRM:-}" ] && extra+=" --confirm $CONFIRM"
  [ -n "${STACK_PROFILE_HZ:-}" ] && extra+=" --stack-profile-hz $STACK_PROFILE_HZ"
  # SECOND_SPACE/SECOND_STUDY: the other GPUs run that study first (e.g. a small grid), then the main one
  (( g > 0 )) && [ -n "${SECOND_SPACE:-}" ] && pairs=("$SECOND_SPACE:$SECOND_STUDY" "${pairs[@]}")
  echo "$(date -u +%T) detached worker GPU $g: ${pairs[*]} until $(date -u -d @"$deadline" +%T), trials start up to $TRIAL_S s before"
  GPU=$g DEADLINE=$deadline TRIAL_S=$TRIAL_S ENGINE=$ENGINE MODEL=$MODEL EXP=$EXP EXTRA=$extra \
    SERVER_CPUS=$(server_cpus "$g") CLIENT_CPUS=$(client_cpus "$g") \
    setsid bash scripts/gpu/worker.sh "${pairs[@]}" >> "$M/worker-gpu$g.log" 2>&1 < /dev/null &  # a later step appends
  echo $! >> "$EXP/workers.pids"
}

wait_workers() {  # until every detached worker has exited or this step's budget is spent; progress every minute
  local pid alive last=0
  [ -f "$EXP/workers.pids" ] || return 0
  while :; do
    alive=0
    for pid in $(cat "$EXP/workers.pids"); do kill -0 "$pid" 2>/dev/null && alive=$(( alive + 1 )); done
    (( alive == 0 )) && { echo "$(date -u +%T) the detached workers have finished"; rm -f "$EXP/workers.pids"; return 0; }
    (( $(left) < 15 )) && { echo "$(date -u +%T) $alive worker(s) still running; this step's budget is spent"; return 1; }
    if (( SECONDS - last >= 60 )); then
      last=$SECONDS
      echo "$(date -u +%T) $alive worker(s) running; $(ls "$EXP/$STUDY/trials" 2>/dev/null | wc -l) trials begun"
    fi
    sleep 2
  done
}

step_agree() {  # GPU 0: autotune bench vs vllm bench serve at 16 streams, A B B A, on vLLM's defaults
  record_env "$M/env.json"; nproc > "$M/nproc.txt"; nvidia-smi topo -m > "$M/topo.txt" 2>&1
  echo $(( $(date +%s) + ${WORKERS_S:-1100} )) > "$DEADLINE_FILE"
  local g
  for (( g = 1; g < NGPU; g++ )); do detached_worker "$g"; done
  (
    export CUDA_VISIBLE_DEVICES=0
    echo "== GPU 0: autotune serve, vLLM defaults; c16 agreement, A B B A"
    serve agree "$DEFAULTS" 8000 "$(server_cpus 0)" || exit 1
    curl -s 127.0.0.1:8000/autotune/config > "$M/autotune-config-agree.json"
    cpus=$(client_cpus 0)
    agree_ours() {
      taskset -c "$cpus" python3 -m autotune.cli bench --url http://127.0.0.1:8000 --workload vlm-chat-random-mm --quiet \
        "${SLO[@]}" --concurrency 16 --num-requests 400 --warmup 32 --seed "$1" --server-pid "$SPID" \
        --output "$M/agree-autotune-$2.json.gz" | grep -E "throughput req/s|TTFT ms|GPU util" | head -3
    }
    agree_ours 16 a1
    vllm_bench 8000 "$cpus" --num-prompts 400 --max-concurrency 16 --seed 1016 --result-filename agree-vllm-b1.json
    vllm_bench 8000 "$cpus" --num-prompts 400 --max-concurrency 16 --seed 2016 --result-filename agree-vllm-b2.json
    agree_ours 3016 a2
    stop_server
  ) > "$M/agree-gpu0.log" 2>&1
  cat "$M/agree-gpu0.log"
  detached_worker 0
  wait_workers
}

step_workers() {  # a detached study worker on every GPU, stopping WORKERS_S after this step began (default: 90 s
  # before the session's end, when SESSION_LEFT_S or LEASE_S tells it, else 1100 s)
  [ -f "$M/env.json" ] || record_env "$M/env.json"  # the run's first step: its date starts the run ("this run")
  nproc > "$M/nproc.txt"
  local workers_s=${WORKERS_S:-1100}
  if [ -f "$EXP/session.end" ]; then
    local by_session=$(( $(cat "$EXP/session.end") - $(date +%s) - 90 ))
    if [ -z "${WORKERS_S:-}" ] || (( by_session < workers_s )); then workers_s=$by_session; fi
  fi
  echo "workers start trials for $(( workers_s - TRIAL_S )) s and stop by $workers_s s from now"
  echo $(( $(date +%s) + workers_s )) > "$DEADLINE_FILE"
  local g
  for (( g = 0; g < NGPU; g++ )); do detached_worker "$g"; done
  wait_workers
}

step_wait() { wait_workers; tail -n 12 "$M"/worker-gpu*.log; }

step_tp() {
  wait_workers || { echo "workers still running: no tensor-parallel trials"; return 1; }
  tail -n 12 "$M"/worker-gpu*.log
  if (( NGPU > 1 )); then  # one worker over both GPUs: trial 0 is TP 2, then TP 1
    worker "0,1" search_spaces/qwen3-vl-4b-2gpu.yaml "${TP_STUDY:-qwen3-vl-4b-tp}" \
      "$(server_cpus 0),$(server_cpus 1)" "$(client_cpus 1)" > "$M/tp.log" 2>&1
    tail -n 30 "$M/tp.log"
  fi
}

case "$STEP" in
  a) step_a ;;
  b) step_b ;;
  c) step_c ;;
  agree) step_agree ;;
  workers) step_workers ;;
  wait) step_wait ;;
  tp) step_tp ;;
  *) echo "usage: $0 a|b|c|agree|workers|wait|tp" >&2; exit 2 ;;
esac
echo "step $STEP took $(( SECONDS - T0 )) s"
pack
