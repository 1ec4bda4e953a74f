"""On a GPU host with vLLM: `autotune serve` with `engines_per_gpu: 2` runs two vLLM engine cores on the one GPU it
sees, each with the KV cache autotune sized for it, and serves through both.

Marked `gpu` (skipped without an NVIDIA GPU, and without vLLM). Run on the device after staging:
    CUDA_VISIBLE_DEVICES=0 python3 -m pytest tests/gpu -q   (AUTOTUNE_GPU_MODEL: another model folder)
The same path served 17 trials of the reference study v2 on 4x H200, 12 with two engines per GPU and 5 with three
(experiments/h100-qwen3-vl-4b/2026-11-26c: their server.log.gz show the engine cores and their KV caches); this
test itself has not run on the device yet.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Iterator

import pytest
from helpers.servers import MODEL_DIR, running_server_process

from autotune import GPU_INSTALL_HINT
from autotune.bench.runner import run_benchmark_sync
from autotune.bench.schemas import SLO, LoadSpec
from autotune.bench.workload import resolve_workload
from autotune.config import EngineConfig, EngineKind, TunedConfig
from autotune.memory_model import ModelInfo, colocated_kv_cache_bytes
from autotune.observe.gpu import gpu_total_memory_gib
from autotune.tune.server_process import ServerProcess

pytestmark = pytest.mark.gpu

MODEL = os.environ.get("AUTOTUNE_GPU_MODEL", MODEL_DIR)  # default: the skeleton the project ships


@pytest.fixture(scope="module")
def engine() -> EngineConfig:
    return EngineConfig(
        model=MODEL, served_model_name="q", load_format="dummy", max_model_len=8192,
        limit_mm_per_prompt={"image": 1, "video": 0}, engines_per_gpu=2, gpu_memory_utilization=0.8,
    )


@pytest.fixture(scope="module")
def two_engine_server(engine: EngineConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    if importlib.util.find_spec("vllm") is None:
        pytest.skip(f"vLLM is not installed ({GPU_INSTALL_HINT})")
    if gpu_total_memory_gib() is None:
        pytest.skip("NVML sees no GPU")
    path = TunedConfig(engine=EngineKind.VLLM, engine_config=engine).write(tmp_path_factory.mktemp("gpu2") / "config.yaml")
    with running_server_process(["--config", str(path), "--engine", "vllm"], startup_timeout_s=600) as server:
        yield server


def test_both_engine_cores_start_on_the_one_gpu_with_the_sized_kv_cache(
    two_engine_server: ServerProcess, engine: EngineConfig
) -> None:
    log = two_engine_server.log_path.read_text(errors="replace")
    assert "2 engine cores per GPU" in log
    assert {"EngineCore_DP0", "EngineCore_DP1"} <= set(re.findall(r"EngineCore_DP\d", log))
    total = gpu_total_memory_gib()
    assert total is not None
    expected = colocated_kv_cache_bytes(engine, ModelInfo.from_model_dir(MODEL), total)
    reserved = re.findall(r"reserved ([\d.]+) GiB memory for KV Cache", log)
    assert len(reserved) == 2 and all(abs(float(r) - expected / 1024**3) < 0.01 for r in reserved)


def test_load_through_both_engines_completes(two_engine_server: ServerProcess) -> None:
    load = LoadSpec(mode="concurrency", concurrency=32, num_requests=128, warmup_requests=8)
    result = run_benchmark_sync(two_engine_server.base_url, resolve_workload("vlm-chat"), load, SLO(ttft_ms=2000, tpot_ms=50))
    assert not result.simulated and result.summary.completed == 128 and result.summary.failed == 0
