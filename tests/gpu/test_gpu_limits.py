"""On a GPU host with vLLM (issue 19): the limit table of vLLM's defaults through the real `autotune limits`.

Every phase must finish all its requests with positive rates, the language-model phase must be at least as fast as
the whole request (it is the whole request without its image), decode must generate the workload's output lengths,
and where the GPU has NVML GPM the phases carry SM activity. The record (`limits.json`, `limits.md`, the command's
output) is written to AUTOTUNE_GPU_RECORD_DIR.

Marked `gpu` (skipped without an NVIDIA GPU and vLLM). On the device, after staging:
    AUTOTUNE_GPU_MODEL=$MODEL AUTOTUNE_GPU_RECORD_DIR=/root/sustained/limits python3 -m pytest tests/gpu/test_gpu_limits.py -q
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autotune import GPU_INSTALL_HINT
from autotune.observe.gpu import gpu_total_memory_gib
from helpers.servers import MODEL_DIR

pytestmark = [pytest.mark.gpu, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[2]
MODEL = os.environ.get("AUTOTUNE_GPU_MODEL", MODEL_DIR)
REQUESTS = int(os.environ.get("AUTOTUNE_GPU_LIMITS_REQUESTS", "2048"))


def test_the_limit_table_of_vllms_defaults(tmp_path: Path) -> None:
    if importlib.util.find_spec("vllm") is None:
        pytest.skip(f"vLLM is not installed ({GPU_INSTALL_HINT})")
    folder = Path(os.environ.get("AUTOTUNE_GPU_RECORD_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    config = REPO / "experiments" / "gpu-configs" / "qwen3-vl-4b-defaults.yaml"
    with open(folder / "limits.log", "w") as log:
        done = subprocess.run(
            [sys.executable, "-m", "autotune.cli", "limits", str(config), "--out", str(folder), "--model", MODEL,
             "--requests", str(REQUESTS)],
            stdout=log, stderr=subprocess.STDOUT, timeout=1100,
        )
    assert done.returncode == 0, (folder / "limits.log").read_text()[-3000:]
    record = json.loads((folder / "limits.json").read_text())
    phases = {phase["name"]: phase for phase in record["phases"]}
    assert list(phases) == ["whole", "language model", "prefill", "text prefill", "decode"]
    assert all(p["requests"] == REQUESTS and p["req_per_s"] > 0 for p in phases.values()), phases
    assert phases["whole"]["output_tokens_mean"] == 128 and phases["decode"]["output_tokens_mean"] == 128
    assert phases["language model"]["prompt_tokens_mean"] == pytest.approx(phases["whole"]["prompt_tokens_mean"], abs=1)
    assert phases["language model"]["req_per_s"] >= 0.95 * phases["whole"]["req_per_s"], phases
    # `vllm serve`'s defaults, not a library engine's (2,048 and 256 on an H100 on 2026-12-07)
    if (gpu_total_memory_gib() or 0) >= 70:
        assert record["batch_limits"] == {"max_num_seqs": 1024, "max_num_batched_tokens": 8192}, record["batch_limits"]
    if all((p["gpu"] or {}).get("gpm_status") == "ok" for p in phases.values()):
        assert all(p["gpu"]["sm_active_mean"] is not None for p in phases.values())
