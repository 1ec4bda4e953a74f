#!/bin/bash
# On the GPU host, after staging: `autotune serve` (vLLM engine, vLLM defaults) answers a streamed image chat,
# then `autotune bench` and `vllm bench serve` measure it on the vlm-chat workload (same load), and
# `autotune bench` at concurrency 128 and 256 with GPU telemetry. Everything lands in $OUT.
# usage: bash scripts/gpu/baseline.sh [CONFIG]   (CONFIG default: vLLM defaults)
set -u
source scripts/gpu/env.sh
CONFIG=${1:-experiments/gpu-configs/qwen3-vl-4b-defaults.yaml}
NAME=${NAME:-autotune-serve}
record_env "$OUT/env.json"
echo "server cpus $SERVER_CPUS, client cpus $CLIENT_CPUS"
t0=$SECONDS
taskset -c "$SERVER_CPUS" python3 -m autotune.cli serve --config "$CONFIG" --engine vllm --port $PORT > "$OUT/serve-$NAME.log" 2>&1 &
pid=$!
wait_ready http://127.0.0.1:$PORT $pid 420 || { tail -40 "$OUT/serve-$NAME.log"; exit 1; }
echo "startup_s=$(( SECONDS - t0 ))" | tee "$OUT/startup-$NAME.txt"
grep -E "non-default args|KV cache size|Maximum concurrency|autotune serve" "$OUT/serve-$NAME.log" | cut -c1-300
curl -s 127.0.0.1:$PORT/autotune/config > "$OUT/autotune-config-$NAME.json"; head -c 300 "$OUT/autotune-config-$NAME.json"; echo
python3 scripts/gpu/stream_chat.py http://127.0.0.1:$PORT > "$OUT/stream-chat-$NAME.txt" 2>&1; tail -5 "$OUT/stream-chat-$NAME.txt"
B="taskset -c $CLIENT_CPUS python3 -m autotune.cli bench --url http://127.0.0.1:$PORT --workload vlm-chat --slo ttft_ms=2000 --slo tpot_ms=50"
for c in ${CONCURRENCIES:-16 128 256}; do
  n=$(( c < 64 ? 400 : c * 8 ))
  $B --concurrency $c --num-requests $n --warmup $(( c < 32 ? 32 : c )) --seed $c --output "$OUT/bench-$NAME-c$c.json" 2>&1 | tail -25
  if [ "$c" = 16 ] && [ -z "${SKIP_VLLM_BENCH:-}" ]; then
    taskset -c "$CLIENT_CPUS" python3 -m vllm.entrypoints.cli.main bench serve --backend openai-chat --endpoint /v1/chat/completions \
      --port $PORT --model q --tokenizer "$MODEL" --dataset-name random-mm --random-mm-base-items-per-request 1 \
      --random-mm-limit-mm-per-prompt '{"image":1,"video":0}' --random-mm-bucket-config '{(448,448,1):1.0}' \
      --random-input-len 64 --random-output-len 128 --num-prompts 400 --max-concurrency 16 --ignore-eos \
      --save-result --result-dir "$OUT" --result-filename vllm-bench-$NAME-c16.json 2>&1 | grep -vE "it/s\]|s/it\]" | tail -22
  fi
  if [ "$c" = 128 ] && [ -z "${SKIP_VLLM_BENCH:-}" ]; then  # the same total concurrency from two vllm bench processes
    vb=()
    for k in 0 1; do
      taskset -c "$CLIENT_CPUS" python3 -m vllm.entrypoints.cli.main bench serve --backend openai-chat --endpoint /v1/chat/completions \
        --port $PORT --model q --tokenizer "$MODEL" --dataset-name random-mm --random-mm-base-items-per-request 1 \
        --random-mm-limit-mm-per-prompt '{"image":1,"video":0}' --random-mm-bucket-config '{(448,448,1):1.0}' \
        --random-input-len 64 --random-output-len 128 --num-prompts 512 --max-concurrency 64 --ignore-eos --seed $k \
        --save-result --result-dir "$OUT" --result-filename vllm-bench-$NAME-c128-p$k.json > "$OUT/vllm-bench-c128-p$k.log" 2>&1 &
      vb+=($!)
    done
    wait "${vb[@]}"
    grep -hE "Request throughput|Mean TTFT|P99 TTFT|Median TTFT" "$OUT"/vllm-bench-c128-p*.log
  fi
done
kill $pid; wait $pid 2>/dev/null
echo "total_s=$(( SECONDS - t0 ))"
