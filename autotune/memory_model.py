"""The one GPU memory / KV-cache estimate.

Used by the simulated engine (how many tokens fit in the KV cache) and by the tuner (to reject
configs that cannot start before spending GPU time). It follows vLLM's accounting: the engine may
use `gpu_memory_gib x gpu_memory_utilization`; weights and an activation reserve come off the top,
the rest is KV cache, and vLLM refuses to start when one sequence of `max_model_len` does not fit.
With `engines_per_gpu` engines on one GPU, each engine gets that share of it, and the estimate is per engine.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from autotune.config import EngineConfig
from autotune.errors import ConfigError
from autotune.hub import model_files_dir

GIB = 1024**3
KV_BLOCK_SIZE_TOKENS = 16  # vLLM's default block size on CUDA

# Weight bytes per parameter by quantization (vision tower stays in 16 bit).
_BYTES_PER_PARAM: dict[str | None, float] = {
    None: 2.0,
    "fp8": 1.0,
    "compressed-tensors": 1.0,
    "awq": 0.55,
    "awq_marlin": 0.55,
    "gptq": 0.55,
    "gptq_marlin": 0.55,
}
_DTYPE_BYTES = {"auto": 2, "bfloat16": 2, "float16": 2, "half": 2, "float32": 4, "float": 4}


class ModelInfo(BaseModel):
    """What the memory estimate needs to know about a model. `num_params_b` includes the vision tower."""

    model_config = ConfigDict(extra="forbid")

    num_params_b: float = Field(gt=0, description="All parameters, billions (language model + vision tower)")
    vision_params_b: float = Field(ge=0, description="Vision tower parameters, billions (part of num_params_b)")
    num_layers: int = Field(ge=1)
    num_kv_heads: int = Field(ge=1)
    head_dim: int = Field(ge=1)
    max_position_embeddings: int = Field(ge=16)

    @classmethod
    def from_model_dir(cls, path: str | Path) -> ModelInfo:
        """Read a Hugging Face `config.json` (Qwen3-VL nests `text_config` and `vision_config`) from a model folder,
        or from the hub cache for a hub id (`autotune.hub`)."""
        config_path = model_files_dir(path) / "config.json"
        if not config_path.is_file():
            raise ConfigError(f"{config_path}: no such file (need the model's config.json to estimate memory)")
        try:
            config = json.loads(config_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{config_path}: not valid JSON: {exc}") from None
        text = config.get("text_config", config)
        vision = config.get("vision_config")

        def need(section: dict[str, Any], key: str, where: str) -> Any:
            if key not in section:
                raise ConfigError(f"{config_path}: {where}{key}: missing (needed for the memory estimate)")
            return section[key]

        where = "text_config." if "text_config" in config else ""
        hidden = int(need(text, "hidden_size", where))
        layers = int(need(text, "num_hidden_layers", where))
        heads = int(need(text, "num_attention_heads", where))
        kv_heads = int(text.get("num_key_value_heads", heads))
        head_dim = int(text.get("head_dim") or hidden // heads)
        intermediate = int(need(text, "intermediate_size", where))
        vocab = int(need(text, "vocab_size", where))
        max_pos = int(need(text, "max_position_embeddings", where))
        tied = bool(config.get("tie_word_embeddings", text.get("tie_word_embeddings", False)))

        attention = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2
        mlp = 3 * hidden * intermediate
        embeddings = vocab * hidden * (1 if tied else 2)
        text_params = layers * (attention + mlp + 2 * hidden) + embeddings
        vision_params = _vision_params(vision) if isinstance(vision, dict) else 0
        return cls(
            num_params_b=round((text_params + vision_params) / 1e9, 4),
            vision_params_b=round(vision_params / 1e9, 4),
            num_layers=layers,
            num_kv_heads=kv_heads,
            head_dim=head_dim,
            max_position_embeddings=max_pos,
        )


def _vision_params(vision: dict[str, Any]) -> int:
    """A ViT with 2x2 patch-merger(s), as in Qwen2/2.5/3-VL."""
    hidden = int(vision.get("hidden_size", vision.get("embed_dim", 0)))
    depth = int(vision.get("depth", vision.get("num_hidden_layers", 0)))
    if not hidden or not depth:
        return 0
    intermediate = int(vision.get("intermediate_size", 4 * hidden))
    merge = int(vision.get("spatial_merge_size", 2))
    out_hidden = int(vision.get("out_hidden_size", hidden))
    patch = int(vision.get("patch_size", 14))
    temporal = int(vision.get("temporal_patch_size", 2))
    channels = int(vision.get("in_channels", 3))
    blocks = depth * (4 * hidden * hidden + 2 * hidden * intermediate)
    merged = hidden * merge * merge
    mergers = 1 + len(vision.get("deepstack_visual_indexes", []))
    merger = mergers * (merged * merged + merged * out_hidden)
    patch_embed = channels * temporal * patch * patch * hidden
    return blocks + merger + patch_embed


class MemoryEstimate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weights_gib: float
    kv_bytes_per_token: int
    kv_capacity_tokens: int = Field(description="Tokens that fit in the KV cache (per GPU); 0 when nothing fits")
    max_seqs_at_max_model_len: int = Field(description="0 means vLLM would refuse to start")


def weight_bytes_per_param(engine: EngineConfig) -> float:
    if engine.quantization is not None:
        return _BYTES_PER_PARAM[engine.quantization]
    return float(_DTYPE_BYTES.get(engine.dtype, 2))


def kv_bytes_per_token(engine: EngineConfig, model: ModelInfo) -> int:
    """K and V of every layer for one token, per GPU (KV heads split across tensor parallel ranks)."""
    element_bytes = 1 if engine.kv_cache_dtype.startswith("fp8") else _DTYPE_BYTES.get(engine.dtype, 2)
    kv_heads_per_gpu = max(1, model.num_kv_heads // engine.tensor_parallel_size)
    return 2 * model.num_layers * kv_heads_per_gpu * model.head_dim * element_bytes


def estimate_memory(
    engine: EngineConfig, model: ModelInfo, gpu_memory_gib: float, activation_reserve_gib: float = 4.0
) -> MemoryEstimate:
    """Per-GPU estimate for `engine` on a GPU of `gpu_memory_gib`; never raises for a config that cannot fit."""
    text_params = (model.num_params_b - model.vision_params_b) * 1e9
    vision_params = model.vision_params_b * 1e9
    weights_bytes = text_params * weight_bytes_per_param(engine) + vision_params * 2.0
    weights_gib = weights_bytes / GIB / engine.tensor_parallel_size
    per_token = kv_bytes_per_token(engine, model)
    free_gib = gpu_memory_gib * engine.utilization_per_engine - weights_gib - activation_reserve_gib
    capacity = 0 if free_gib <= 0 else int(free_gib * GIB // per_token)
    capacity -= capacity % KV_BLOCK_SIZE_TOKENS
    max_model_len = engine.max_model_len or model.max_position_embeddings
    return MemoryEstimate(
        weights_gib=round(weights_gib, 3),
        kv_bytes_per_token=per_token,
        kv_capacity_tokens=capacity,
        max_seqs_at_max_model_len=capacity // max_model_len if max_model_len else 0,
    )


COLOCATED_RESERVE_GIB = 4.0
"""Memory each co-located engine keeps beside weights and KV cache: activations, CUDA graphs, the CUDA context.
About three times what one engine measured alone keeps (experiments/h100-qwen3-vl-4b/README.md, "Measurements the
code relies on")."""


def colocated_kv_cache_bytes(engine: EngineConfig, model: ModelInfo, gpu_memory_gib: float) -> int:
    """Each co-located engine's KV cache (vLLM `kv_cache_memory_bytes`): its share of the GPU less weights and
    COLOCATED_RESERVE_GIB. vLLM's own sizing reads the device's free memory, which the other engines change
    while it measures. Raises ConfigError when nothing is left for the cache."""
    estimate = estimate_memory(engine, model, gpu_memory_gib, COLOCATED_RESERVE_GIB)
    if estimate.kv_capacity_tokens <= 0:
        raise ConfigError(
            f"engines_per_gpu {engine.engines_per_gpu}: each engine's share of {gpu_memory_gib:.1f} GiB x "
            f"{engine.effective_gpu_memory_utilization:.2f} leaves no KV cache beside "
            f"{estimate.weights_gib:.1f} GiB of weights and {COLOCATED_RESERVE_GIB:.1f} GiB reserve"
        )
    return estimate.kv_capacity_tokens * estimate.kv_bytes_per_token


def blocks_for(tokens: int) -> int:
    return math.ceil(tokens / KV_BLOCK_SIZE_TOKENS)
