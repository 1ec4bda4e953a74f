# Sourced by the GPU scripts: paths and environment on the offline GPU host (see README, "GPU").
export PYTHONPATH=/opt/gpu-site:$PWD
export PYTHONUNBUFFERED=1
export COLUMNS=${COLUMNS:-200}   # wide rich tables in the logs
export VLLM_USE_FLASHINFER_SAMPLER=0
export VLLM_CACHE_ROOT=${VLLM_CACHE_ROOT:-/root/.cache/vllm}   # one compile cache across trials and commands
# Triton's own kernel cache beside it, so that it travels with the compile cache (compile_cache.sh): on 2026-12-07 the
# first start of a lease JIT-compiled three of vLLM's Triton kernels inside the server's warm-up burst (7.7 s in all)
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-$VLLM_CACHE_ROOT/triton}
export MODEL=${MODEL:-/root/models/qwen3-vl-4b-instruct}
export OUT=${OUT:-$PWD/experiments/_out}
mkdir -p "$OUT"
NCPU=$(nproc)
export PORT=${PORT:-8000}
# Server and load generator on separate cores: the last quarter (at least 2) for the client.
export CLIENT_CPUS=${CLIENT_CPUS:-"$(( NCPU - (NCPU/4 > 2 ? NCPU/4 : 2) ))-$(( NCPU - 1 ))"}
export SERVER_CPUS=${SERVER_CPUS:-"0-$(( NCPU - (NCPU/4 > 2 ? NCPU/4 : 2) - 1 ))"}
autotune() { python3 -m autotune.cli "$@"; }
wait_ready() {  # wait_ready URL PID LIMIT_S: poll /health until 200, or fail if the process died
  local url=$1 pid=$2 limit=${3:-400} t0=$SECONDS
  until curl -sf "$url/health" >/dev/null; do
    kill -0 "$pid" 2>/dev/null || { echo "server exited before ready"; return 1; }
    (( SECONDS - t0 > limit )) && { echo "server not ready after $limit s"; return 1; }
    sleep 1
  done
  echo "ready after $(( SECONDS - t0 )) s"
}
record_env() {  # record_env FILE: hardware and versions as JSON
  python3 - "$1" <<'PY'
import json, subprocess, sys, platform, datetime, importlib.metadata as md
def v(p):
    try: return md.version(p)
    except Exception: return None
try:
    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
except FileNotFoundError:
    smi = ""  # no NVIDIA driver (a simulated smoke run)
json.dump({"date": datetime.datetime.now(datetime.UTC).isoformat(), "gpus": smi.splitlines(), "cpu_count": __import__("os").cpu_count(),
           "cpu_model": next((l.split(":",1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), None),
           "python": platform.python_version(), "versions": {p: v(p) for p in ["vllm","torch","transformers","optuna","mlflow","fastapi","aiohttp"]}},
          open(sys.argv[1], "w"), indent=2)
PY
}
