"""On a GPU host with vLLM (issue 17): a warm start (`autotune tune --warm-start`) measures what a cold start does.

Three one-trial studies of the reference space's fixed part (vLLM's defaults otherwise) at a fixed rate, one after the
other on one GPU and one compile cache:
  1. cold-prime: a cold start, so that vLLM's compile cache and model-class record (modelinfos) exist for both others;
  2. warm: `--warm-start`, with VLLM_WORKER_MULTIPROC_METHOD=fork (the engine core forked from the warm API server;
     AUTOTUNE_GPU_WARM_FORK=0 leaves vLLM's CLI default, spawn);
  3. cold: the old path again, with the same caches as 2.
The warm trial must have been forked, start sooner than 3, and measure the same: no failed request in either,
throughput within 5% and TPOT p50 within 10% of 3's. The record (`warm-start.json` in AUTOTUNE_GPU_RECORD_DIR, with
the studies beside it) keeps each start's phases.

Marked `gpu` (skipped without an NVIDIA GPU and vLLM). On the device, after staging:
    AUTOTUNE_GPU_MODEL=$MODEL AUTOTUNE_GPU_RECORD_DIR=/root/sustained/warm-start python3 -m pytest tests/gpu/test_gpu_warm_start.py -q
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from helpers.gpu_studies import cpu_split, finish, fixed_rate_space, trial_record, tune_one_trial
from reliability.reliability_study import load_trials

from autotune import GPU_INSTALL_HINT
from autotune.observe.gpu import gpu_total_memory_gib

pytestmark = [pytest.mark.gpu, pytest.mark.timeout(1800)]

RATE_RPS = 20.0  # well inside vLLM defaults' SLO rate (~35 req/s on an H200)
WINDOW_S = 40.0
WARMUP_REQUESTS = 16
FORK_ENGINE_CORE = os.environ.get("AUTOTUNE_GPU_WARM_FORK", "1") != "0"


def test_a_warm_start_serves_and_measures_what_a_cold_start_does(tmp_path: Path) -> None:
    if importlib.util.find_spec("vllm") is None:
        pytest.skip(f"vLLM is not installed ({GPU_INSTALL_HINT})")
    assert gpu_total_memory_gib() is not None
    folder = Path(os.environ.get("AUTOTUNE_GPU_RECORD_DIR") or tmp_path)
    experiments = folder / "experiments"
    experiments.mkdir(parents=True, exist_ok=True)
    space = fixed_rate_space(folder / "fixed.yaml", rate_rps=RATE_RPS, window_s=WINDOW_S, warmup_requests=WARMUP_REQUESTS)
    fork_env = {"VLLM_WORKER_MULTIPROC_METHOD": "fork"} if FORK_ENGINE_CORE else {}
    record: dict[str, Any] = {"rate_rps": RATE_RPS, "window_s": WINDOW_S, "cpus": cpu_split(),
                              "engine_core_start": "fork" if FORK_ENGINE_CORE else "spawn (vLLM's CLI default)",
                              "started": time.time()}
    steps = [("cold-prime", [], {}), ("warm", ["--warm-start"], fork_env), ("cold", [], {})]
    try:
        for study, extra_args, env in steps:
            log = folder / f"tune-{study}.log"
            started = time.monotonic()
            rc = finish(tune_one_trial(space, study, experiments, log, extra_args=extra_args, env=env), 900)
            trials = load_trials(experiments / study, study)
            assert rc == 0 and trials, log.read_text(errors="replace")[-3000:]
            record[study] = {**trial_record(trials[0], experiments / study),
                             "tune_wall_s": round(time.monotonic() - started, 1)}
    finally:
        record["ended"] = time.time()
        (folder / "warm-start.json").write_text(json.dumps(record, indent=2))
    _check(record)


def _check(record: dict[str, Any]) -> None:
    """Every promise checked, each broken one named."""
    warm, cold = record["warm"], record["cold"]
    broken = []
    if warm["warm_start"] is not True:
        broken.append(f"warm: the server was not forked from the warm parent: {warm}")
    for name, trial in (("warm", warm), ("cold", cold)):
        if trial["state"] != "COMPLETE" or trial["failed"]:
            broken.append(f"{name}: the trial completes without a failed request: {trial}")
    if not warm["startup_s"] < cold["startup_s"]:
        broken.append(f"warm start {warm['startup_s']} s is not sooner than the cold one's {cold['startup_s']} s")
    if abs(warm["throughput_rps"] - cold["throughput_rps"]) > 0.05 * cold["throughput_rps"]:
        broken.append(f"throughput {warm['throughput_rps']} vs {cold['throughput_rps']} req/s: more than 5% apart")
    if abs(warm["tpot_p50_ms"] - cold["tpot_p50_ms"]) > 0.10 * cold["tpot_p50_ms"]:
        broken.append(f"TPOT p50 {warm['tpot_p50_ms']} vs {cold['tpot_p50_ms']} ms: more than 10% apart")
    assert not broken, "\n".join(broken)
