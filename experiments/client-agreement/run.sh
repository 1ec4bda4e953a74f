#!/bin/bash
# autotune bench vs vllm bench serve against one deterministic loopback server (no GPU): each client's own TTFT
# and throughput bias at concurrency 16 on the vlm-chat random-mm shape, in alternating order (A B B A).
# The server (tests/bench/fake_openai_server.py) waits exactly TTFT_MS before the first token and ITL_MS between
# tokens, and sends the role chunk with the first token as vLLM's chat server does.
# Needs: .venv (autotune) and a Python with vllm 0.24.0 for `vllm bench serve` (VLLM_PY; on this CPU box: a venv
# with the CPU torch wheel and `pip install --no-deps vllm==0.24.0` plus the client's missing imports).
# usage: VLLM_PY=/path/to/python bash experiments/client-agreement/run.sh
set -eu
cd "$(dirname "$0")/../.."
OUT=experiments/client-agreement; PORT=${PORT:-18555}; TTFT_MS=${TTFT_MS:-50}; ITL_MS=${ITL_MS:-5}
VLLM_PY=${VLLM_PY:?set VLLM_PY to a python with vllm 0.24.0}
# vllm bench serve reads the tokenizer folder itself: the shipped skeleton, unpacked (autotune/model_files.py)
MODEL=${MODEL:-$(.venv/bin/python -c "from autotune.model_files import usable_model_dir as u; print(u('search_spaces/models/qwen3-vl-4b-instruct'))")}
.venv/bin/python tests/bench/fake_openai_server.py --ttft-ms "$TTFT_MS" --itl-ms "$ITL_MS" --model q --port "$PORT" \
  --role-with-first-token > "$OUT/server.log" 2>&1 &
server=$!
trap 'kill $server' EXIT
until curl -sf "127.0.0.1:$PORT/health" >/dev/null; do kill -0 $server; sleep 0.2; done
ours() {
  .venv/bin/autotune bench --url "http://127.0.0.1:$PORT" --workload vlm-chat-random-mm --concurrency 16 --num-requests 400 \
    --warmup 32 --seed "$1" --quiet --no-telemetry --output "$OUT/autotune-bench-$2.json.gz" | grep -E "TTFT ms|throughput req/s"
}
theirs() {
  "$VLLM_PY" -m vllm.entrypoints.cli.main bench serve --backend openai-chat --endpoint /v1/chat/completions --port "$PORT" \
    --model q --tokenizer "$MODEL" --dataset-name random-mm --random-mm-base-items-per-request 1 \
    --random-mm-limit-mm-per-prompt '{"image":1,"video":0}' --random-mm-bucket-config '{(448,448,1):1.0}' \
    --random-input-len 64 --random-output-len 128 --ignore-eos --num-prompts 400 --max-concurrency 16 --seed "$1" \
    --save-result --result-dir "$OUT" --result-filename "vllm-bench-$2.json" 2>&1 | grep -E "Request throughput|Median TTFT"
}
theirs 16 r1; ours 16 r1; ours 17 r2; theirs 17 r2
date -u +%FT%TZ > "$OUT/date.txt"; nproc > "$OUT/nproc.txt"
