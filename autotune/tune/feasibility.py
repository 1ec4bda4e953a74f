"""Whether a config can start at all on this GPU, judged from the model's config.json before any server starts."""

from __future__ import annotations

import logging

from autotune.config import EngineConfig
from autotune.errors import ConfigError
from autotune.memory_model import MemoryEstimate, ModelInfo, estimate_memory
from autotune.space import TrialSettings

log = logging.getLogger(__name__)


def check_feasibility(
    engine: EngineConfig, settings: TrialSettings, gpu_memory_gib: float | None
) -> tuple[str | None, MemoryEstimate | None]:
    """(reason it cannot start, estimate) before any server starts; (None, None) when it cannot be judged."""
    if gpu_memory_gib is None:
        return None, None
    try:
        model = ModelInfo.from_model_dir(engine.model)
    except ConfigError as exc:
        _warn_no_memory_check(engine.model, exc)
        return None, None
    estimate = estimate_memory(engine, model, gpu_memory_gib, settings.activation_reserve_gib)
    utilization = engine.effective_gpu_memory_utilization
    budget_gib = gpu_memory_gib * engine.utilization_per_engine
    if estimate.weights_gib + settings.activation_reserve_gib > budget_gib:
        share = f" / {engine.engines_per_gpu} engines" if engine.engines_per_gpu > 1 else ""
        return (
            f"infeasible: weights ({estimate.weights_gib:.1f} GiB) plus activation reserve "
            f"({settings.activation_reserve_gib:.1f} GiB) exceed gpu_memory_utilization {utilization} "
            f"x {gpu_memory_gib:.1f} GiB{share} = {budget_gib:.1f} GiB",
            estimate,
        )
    max_model_len = engine.max_model_len or model.max_position_embeddings
    if estimate.kv_capacity_tokens < max_model_len:
        return (
            f"infeasible: the KV cache would hold {estimate.kv_capacity_tokens} tokens, less than one "
            f"max_model_len sequence ({max_model_len} tokens)",
            estimate,
        )
    return None, estimate


_WARNED_NO_MEMORY_CHECK: set[str] = set()


def _warn_no_memory_check(model: str, reason: ConfigError) -> None:
    """Once per model and process: without its config.json no trial of it is checked before its server starts."""
    if model in _WARNED_NO_MEMORY_CHECK:
        return
    _WARNED_NO_MEMORY_CHECK.add(model)
    log.warning(
        "NO MEMORY PRE-CHECK for model %s: %s. Configs whose weights or KV cache do not fit the GPU will start a "
        "server and fail there instead of being rejected up front.", model, reason,
    )
