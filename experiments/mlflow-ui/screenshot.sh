#!/usr/bin/env bash
# Headless screenshots of the MLflow UI for the GPU study (the UI must be running on 127.0.0.1:5055).
# Usage: experiments/mlflow-ui/screenshot.sh  (from the repo root)
set -euo pipefail
out=experiments/mlflow-ui
base=http://127.0.0.1:5055
db=sqlite:///experiments/gpu-runs/qwen3-vl-4b-h100x2/mlflow.db
read -r exp runs < <(.venv/bin/python - "$db" <<'PY' 2>/dev/null
import json, sys, mlflow
mlflow.set_tracking_uri(sys.argv[1])
exp = mlflow.get_experiment_by_name("autotune").experiment_id
df = mlflow.search_runs([exp])
ids = [r for r, name in zip(df.run_id, df["tags.mlflow.runName"]) if str(name).startswith("trial-")]
print(exp, json.dumps(ids, separators=(",", ":")))
PY
)
shot() {
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --user-data-dir="$(mktemp -d)" --window-size=1600,1000 \
    --virtual-time-budget=20000 --hide-scrollbars --screenshot="$1" "$2" 2>/dev/null
}
shot "$out/runs-list.png" "$base/#/experiments/$exp/runs"  # parent run (trials nested under it)
shot "$out/compare-runs.png" "$base/#/compare-runs?runs=$runs&experiments=[\"$exp\"]"
echo "experiment $exp runs $runs"
