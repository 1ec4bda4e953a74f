"""Several vLLM engine cores on one GPU (`engines_per_gpu`), with vLLM's own data parallelism.

Why: the engine core's one thread can be the limit, never idle while the GPU is far from busy
(experiments/h100-qwen3-vl-4b/README.md, "Measurements the code relies on"). vLLM runs the data-parallel ranks of a
dense model as independent engine cores, load-balanced by its own API servers (vllm/v1/engine/core.py: "Non-MoE DP
ranks are completely independent"), so a second rank is a second such thread.

vLLM 0.24 puts local rank r on CUDA device r (`Worker.init_device`: local rank + DP local rank x TP size);
`--device-ids` refuses a GPU named twice, and so does CUDA in CUDA_VISIBLE_DEVICES (a repeated ordinal hides
every device). So `place_engines_on_shared_gpus` wraps `EngineCoreProc.run_engine_core`, the target of each
engine-core process, to start rank r with local rank r // engines_per_gpu: ranks 0..k-1 on the first GPU, k..2k-1
on the second. The wrapper is a function of this module, so a spawned engine core imports it by name and reads
`engines_per_gpu` from ENGINES_PER_GPU_ENV; a forked one inherits it. Each engine gets a fixed KV cache
(`kv_cache_bytes_per_engine`): vLLM's own sizing reads the device's free memory, which the other engines change
while they start.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from autotune.config import EngineConfig
from autotune.errors import ConfigError
from autotune.memory_model import ModelInfo, colocated_kv_cache_bytes
from autotune.observe.gpu import gpu_total_memory_gib

ENGINES_PER_GPU_ENV = "AUTOTUNE_ENGINES_PER_GPU"

_original_run_engine_core: Callable[..., Any] | None = None


def colocation_env(engine: EngineConfig) -> dict[str, str]:
    """The environment that tells each engine-core process how many engines share its GPU (empty for one)."""
    return {} if engine.engines_per_gpu == 1 else {ENGINES_PER_GPU_ENV: str(engine.engines_per_gpu)}


def shared_gpu_local_rank(local_dp_rank: int, engines_per_gpu: int) -> int:
    """The local rank (and so the CUDA device) of data-parallel rank `local_dp_rank`: k consecutive ranks per GPU."""
    return local_dp_rank // engines_per_gpu


def run_engine_core_on_shared_gpu(*args: Any, dp_rank: int = 0, local_dp_rank: int = 0, **kwargs: Any) -> Any:
    """`EngineCoreProc.run_engine_core` with the local rank of a GPU shared by ENGINES_PER_GPU_ENV engines."""
    per_gpu = int(os.environ.get(ENGINES_PER_GPU_ENV, "1"))
    run = _original_run_engine_core
    if run is None:  # a spawned process: vLLM's own function, as imported here
        from vllm.v1.engine.core import EngineCoreProc

        run = EngineCoreProc.run_engine_core
    return run(*args, dp_rank=dp_rank, local_dp_rank=shared_gpu_local_rank(local_dp_rank, per_gpu), **kwargs)


def place_engines_on_shared_gpus(engine: EngineConfig) -> bool:
    """Before vLLM starts its engine cores: place `engines_per_gpu` of them on each GPU. True when applied."""
    global _original_run_engine_core
    if engine.engines_per_gpu == 1:
        return False
    from vllm.v1.engine.core import EngineCoreProc

    if _original_run_engine_core is None:
        _original_run_engine_core = EngineCoreProc.run_engine_core
        EngineCoreProc.run_engine_core = staticmethod(run_engine_core_on_shared_gpu)  # type: ignore[method-assign]
    return True


def kv_cache_bytes_per_engine(engine: EngineConfig, gpu_memory_gib: float | None = None) -> int | None:
    """Each co-located engine's KV cache in bytes, from the model's config.json and this host's GPU (NVML);
    None for one engine per GPU. Raises ConfigError when the GPU's size or the model's shape is unknown."""
    if engine.engines_per_gpu == 1:
        return None
    total = gpu_memory_gib if gpu_memory_gib is not None else gpu_total_memory_gib()
    if total is None:
        raise ConfigError("engines_per_gpu > 1 sizes each engine's KV cache from the GPU's memory: NVML sees no GPU here")
    return colocated_kv_cache_bytes(engine, ModelInfo.from_model_dir(engine.model), total)
