#!/bin/bash
# Raw `vllm serve` with exactly the engine args that `autotune serve` passes for CONFIG (same translation
# function), measured by `autotune bench` like baseline.sh: the serving layer's overhead is the difference.
set -u
source scripts/gpu/env.sh
CONFIG=${1:-experiments/gpu-configs/qwen3-vl-4b-defaults.yaml}
NAME=${NAME:-vllm-serve}
ARGS=$(python3 -c "
import shlex, sys
from autotune.config import load_tuned_config
c = load_tuned_config(sys.argv[1]).engine_config
print(shlex.join([c.model, *c.to_vllm_cli_args()]))" "$CONFIG")
echo "vllm serve $ARGS"
t0=$SECONDS
eval taskset -c "$SERVER_CPUS" python3 -m vllm.entrypoints.cli.main serve $ARGS --port $PORT > "$OUT/serve-$NAME.log" 2>&1 &
pid=$!
wait_ready http://127.0.0.1:$PORT $pid 420 || { tail -40 "$OUT/serve-$NAME.log"; exit 1; }
echo "startup_s=$(( SECONDS - t0 ))" | tee "$OUT/startup-$NAME.txt"
B="taskset -c $CLIENT_CPUS python3 -m autotune.cli bench --url http://127.0.0.1:$PORT --workload vlm-chat --slo ttft_ms=2000 --slo tpot_ms=50"
for c in ${CONCURRENCIES:-128 256}; do
  $B --concurrency $c --num-requests $(( c * 8 )) --warmup $c --seed $c --output "$OUT/bench-$NAME-c$c.json" 2>&1 | tail -25
done
kill $pid; wait $pid 2>/dev/null
