"""Cost model of the simulated engine: vLLM defaults resolved, memory, step time and frontend costs.

Pure functions of an EngineConfig and a SimulatorProfile; no clocks, no asyncio.
"""

from __future__ import annotations

from dataclasses import dataclass

from autotune.config import VLLM_DEFAULT_GPU_MEMORY_UTILIZATION, EngineConfig
from autotune.memory_model import GIB, MemoryEstimate, estimate_memory, weight_bytes_per_param
from serving.engines.profile import SimulatorProfile

# vLLM 0.24 defaults for an H100 OpenAI server (what `None` means in an EngineConfig).
DEFAULT_MAX_NUM_SEQS = 1024
DEFAULT_MAX_NUM_BATCHED_TOKENS = 8192
DEFAULT_GPU_MEMORY_UTILIZATION = VLLM_DEFAULT_GPU_MEMORY_UTILIZATION
DEFAULT_MM_PROCESSOR_CACHE_GB = 4.0
UNCHUNKED_MIN_BATCHED_TOKENS = 2048


@dataclass(frozen=True, slots=True)
class SimulatedSettings:
    """An EngineConfig with every vLLM default filled in."""

    max_model_len: int
    max_num_seqs: int
    max_num_batched_tokens: int
    gpu_memory_utilization: float
    enable_prefix_caching: bool
    enable_chunked_prefill: bool
    api_server_count: int
    preprocessing_workers: int
    mm_processor_cache_gb: float
    max_images_per_prompt: int | None

    @classmethod
    def resolve(cls, engine: EngineConfig, max_position_embeddings: int) -> SimulatedSettings:
        chunked = engine.enable_chunked_prefill is not False
        max_model_len = engine.max_model_len or max_position_embeddings
        if engine.max_num_batched_tokens is not None:
            batched = engine.max_num_batched_tokens
        elif chunked:
            batched = DEFAULT_MAX_NUM_BATCHED_TOKENS
        else:  # vLLM: without chunked prefill a whole prompt must fit in one step
            batched = max(max_model_len, UNCHUNKED_MIN_BATCHED_TOKENS)
        return cls(
            max_model_len=max_model_len,
            max_num_seqs=engine.max_num_seqs or DEFAULT_MAX_NUM_SEQS,
            max_num_batched_tokens=batched,
            gpu_memory_utilization=engine.gpu_memory_utilization or DEFAULT_GPU_MEMORY_UTILIZATION,
            enable_prefix_caching=engine.enable_prefix_caching is not False,
            enable_chunked_prefill=chunked,
            api_server_count=engine.api_server_count or 1,
            preprocessing_workers=engine.preprocessing_workers or 1,
            mm_processor_cache_gb=(
                DEFAULT_MM_PROCESSOR_CACHE_GB if engine.mm_processor_cache_gb is None else engine.mm_processor_cache_gb
            ),
            max_images_per_prompt=engine.mm_item_limit("image"),
        )


@dataclass(frozen=True, slots=True)
class StepWork:
    """What one engine step computes."""

    decode_seqs: int = 0
    prefill_tokens: int = 0
    context_tokens: int = 0  # KV entries read by attention (all scheduled sequences)
    image_tokens_encoded: int = 0


class CostModel:
    """Step time = overhead + decodes + prefill tokens + weight read + KV read + vision encoder."""

    def __init__(self, profile: SimulatorProfile, engine: EngineConfig) -> None:
        self.profile = profile
        self.engine = engine
        self.settings = SimulatedSettings.resolve(engine, profile.model.max_position_embeddings)
        self.memory: MemoryEstimate = estimate_memory(
            engine, profile.model, profile.gpu.memory_gib, profile.gpu_costs.activation_reserve_gib
        )
        costs = profile.gpu_costs
        bandwidth_bytes_per_s = profile.gpu.memory_bandwidth_gb_s * 1e9
        compute = costs.quantization_compute_factor.get(engine.quantization, 1.0) if engine.quantization else 1.0
        self._weight_read_s = self.memory.weights_gib * GIB / bandwidth_bytes_per_s
        self._kv_read_s_per_token = self.memory.kv_bytes_per_token / bandwidth_bytes_per_s
        self._overhead_s = costs.step_overhead_ms / 1e3
        self._decode_s = costs.decode_ms_per_seq / 1e3 * compute
        self._prefill_s = costs.prefill_ms_per_token / 1e3 * compute
        self._vision_s = costs.vision_encoder_ms_per_image_token / 1e3
        front = profile.frontend
        self.request_s = front.request_ms / 1e3
        self.streamed_token_s = front.streamed_token_ms / 1e3
        self.image_cache_hit_s = front.image_cache_hit_ms / 1e3
        self.image_cache_bytes = int(self.settings.mm_processor_cache_gb * GIB)
        self._image_base_s = front.image_preprocess_ms_base / 1e3
        self._image_per_pixel_s = front.image_preprocess_ms_per_megapixel / 1e3 / 1e6
        self._cache_bytes_per_pixel = front.image_cache_bytes_per_pixel
        self.weight_bytes_per_param = weight_bytes_per_param(engine)

    @property
    def kv_capacity_tokens(self) -> int:
        return self.memory.kv_capacity_tokens

    def step_time_s(self, work: StepWork) -> float:
        return (
            self._overhead_s
            + work.decode_seqs * self._decode_s
            + work.prefill_tokens * self._prefill_s
            + self._weight_read_s
            + work.context_tokens * self._kv_read_s_per_token
            + work.image_tokens_encoded * self._vision_s
        )

    def image_preprocess_s(self, pixels: int) -> float:
        return self._image_base_s + pixels * self._image_per_pixel_s

    def image_cache_entry_bytes(self, pixels: int) -> int:
        return int(pixels * self._cache_bytes_per_pixel)
