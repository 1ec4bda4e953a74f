"""One-trial `autotune tune` studies of the reference space's fixed part on the GPU (the device's GPU tests).

Each study serves vLLM's defaults for the reference space (`search_spaces/qwen3-vl-4b.yaml`'s engine_base, the model
from AUTOTUNE_GPU_MODEL) and measures it at a fixed rate, so that two studies of the same config can be compared
(engine death: before and after a kill; warm start: a cold and a warm start)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from optuna.trial import FrozenTrial
from reliability.reliability_study import group_alive, start_cli

from autotune.tune import attrs
from helpers.servers import MODEL_DIR

REPO = Path(__file__).resolve().parents[2]
MODEL = os.environ.get("AUTOTUNE_GPU_MODEL", MODEL_DIR)


def fixed_rate_space(
    path: Path, *, rate_rps: float, window_s: float, warmup_requests: int,
    extra_engine_args: dict[str, Any] | None = None,
) -> Path:
    """The reference space's fixed part (vLLM's defaults otherwise) as a one-point space, measured at a fixed rate."""
    data = yaml.safe_load((REPO / "search_spaces" / "qwen3-vl-4b.yaml").read_text())
    base = copy.deepcopy(data["engine_base"])
    base["model"] = MODEL
    if extra_engine_args:
        base["extra_engine_args"] = extra_engine_args
    space = {
        "name": path.stem,
        "engine": "vllm",
        "engine_base": base,
        "parameters": {"max_num_seqs": {"type": "categorical", "choices": [256]}},
        "workload": "vlm-chat",
        "slo": data["slo"],
        "load": {"mode": "rate", "rate_rps": rate_rps, "duration_s": window_s, "num_requests": None},
        "trial": {"warmup_requests": warmup_requests, "startup_timeout_s": 600, "measure_timeout_s": 300,
                  "gpu_release_timeout_s": 90},
        "budget": {"n_trials": 1},
    }
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def cpu_split() -> tuple[str, str]:
    """The server on the first three quarters of the cores, the load generator on the rest."""
    count = max(2, os.cpu_count() or 2)
    client = max(1, count // 4)
    return f"0-{count - client - 1}", f"{count - client}-{count - 1}"


def tune_one_trial(
    space: Path, study: str, experiments: Path, log: Path, *, extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """`autotune tune` of a one-trial study, its logs kept beside the record (the server's under trials/0/)."""
    server_cpus, client_cpus = cpu_split()
    return start_cli(
        ["tune", str(space), "--study", study, "--experiments-dir", str(experiments), "--no-mlflow",
         "--n-trials", "1", "--server-cpus", server_cpus, "--client-cpus", client_cpus, *extra_args],
        log, env=env,
    )


def finish(tuner: subprocess.Popen[bytes], timeout_s: float) -> int:
    try:
        return tuner.wait(timeout=timeout_s)
    finally:
        if tuner.poll() is None:
            tuner.kill()
            tuner.wait()


def trial_record(trial: FrozenTrial, study_dir: Path) -> dict[str, Any]:
    """What the GPU records keep of a trial: state, reason, start, GPU memory, its server group, its figures."""
    folder = study_dir / "trials" / str(trial.number)
    result = json.loads((folder / "trial.json").read_text()) if (folder / "trial.json").exists() else {}
    summary = result.get("summary") or {}
    pgid = trial.user_attrs.get(attrs.SERVER_PGID)
    return {
        "number": trial.number,
        "state": trial.state.name,
        "reason": trial.user_attrs.get(attrs.FAIL_REASON),
        "startup_s": (result.get("timings") or {}).get("startup_s"),
        "start_phases": result.get("start_phases"),
        "warm_start": result.get("warm_start"),
        "gpu_memory_before_mib": result.get("gpu_memory_before_mib"),
        "gpu_memory_after_mib": result.get("gpu_memory_after_mib"),
        "gpu_memory_released": result.get("gpu_memory_released"),
        "server_pgid": pgid,
        "server_group_left": bool(pgid) and group_alive(int(pgid)),
        "completed": summary.get("completed"),
        "failed": summary.get("failed"),
        "throughput_rps": summary.get("throughput_rps"),
        "ttft_p50_ms": (summary.get("ttft_ms") or {}).get("p50"),
        "ttft_p99_ms": (summary.get("ttft_ms") or {}).get("p99"),
        "tpot_p50_ms": (summary.get("tpot_ms") or {}).get("p50"),
        "tpot_p99_ms": (summary.get("tpot_ms") or {}).get("p99"),
    }
