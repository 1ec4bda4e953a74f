"""Config models shared by tuning and serving: one definition each.

Flow: search_spaces/*.yaml -> SearchSpace -> trial params -> EngineConfig -> TrialResult
-> TunedConfig file -> `autotune serve` -> engine. `EngineConfig.to_vllm_cli_args` is the one
place where an EngineConfig becomes vLLM arguments.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_serializer,
    model_validator,
)

from autotune.base_models import StrictModel
from autotune.errors import ConfigError, config_error_from
from autotune.hub import looks_like_hub_id

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
VLLM_DEFAULT_GPU_MEMORY_UTILIZATION = 0.92
"""vLLM 0.24's default `gpu_memory_utilization` (vllm/config/cache.py), used where a config leaves it unset."""


class EngineKind(StrEnum):
    VLLM = "vllm"
    SIMULATED = "simulated"


KVCacheDType = Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2"]
Quantization = Literal["fp8", "awq", "awq_marlin", "gptq", "gptq_marlin", "compressed-tensors"]


Modality = Literal["image", "video", "audio"]


class MediaLimit(StrictModel):
    """Items of one modality per prompt, and the item size vLLM profiles memory with and warms up on.

    vLLM's default profiles the largest item the processor accepts (for Qwen3-VL a ~16-megapixel image,
    ~20-35 s of image processing per server start); a deployment that serves known image sizes can
    say so here, which shortens every start. Larger images are still accepted: this sizes the
    profiling, so keep `gpu_memory_utilization` headroom if clients may send much larger ones.
    """

    count: Annotated[int, Field(ge=0)]
    width: Annotated[int, Field(gt=0)] | None = None
    height: Annotated[int, Field(gt=0)] | None = None
    num_frames: Annotated[int, Field(gt=0)] | None = None


class EngineConfig(StrictModel):
    """vLLM engine settings. `None` means "vLLM's own default" (it is not passed at all)."""

    model: str = Field(description="Model folder or hub id")
    served_model_name: str | None = Field(default=None, description="Name clients use; default: the folder name")
    dtype: str = "auto"
    load_format: str = Field(default="auto", description="'dummy' for weightless skeletons")
    max_model_len: Annotated[int, Field(ge=16)] | None = None
    max_num_seqs: Annotated[int, Field(ge=1, le=65536)] | None = None
    max_num_batched_tokens: Annotated[int, Field(ge=16)] | None = None
    gpu_memory_utilization: Annotated[float, Field(gt=0.05, le=0.99)] | None = None
    kv_cache_dtype: KVCacheDType = "auto"
    quantization: Quantization | None = None
    enable_prefix_caching: bool | None = None
    enable_chunked_prefill: bool | None = None
    limit_mm_per_prompt: dict[Modality, Annotated[int, Field(ge=0)] | MediaLimit] | None = Field(
        default=None, description="Items per prompt by modality: a count, or {count, width, height} to size profiling"
    )
    mm_processor_cache_gb: Annotated[float, Field(ge=0)] | None = None
    mm_processor_kwargs: dict[str, Any] | None = Field(
        default=None, description="Forwarded to the HF processor, e.g. {'use_fast': true, 'device': 'cuda'}"
    )
    preprocessing_workers: Annotated[int, Field(ge=1, le=64)] | None = Field(
        default=None, description="Threads that render chat templates and preprocess images (vLLM renderer_num_workers)"
    )
    api_server_count: Annotated[int, Field(ge=1, le=32)] | None = Field(
        default=None, description="API frontend processes sharing one engine"
    )
    tensor_parallel_size: Annotated[int, Field(ge=1, le=64)] = 1
    data_parallel_size: Annotated[int, Field(ge=1, le=64)] = 1
    engines_per_gpu: Annotated[int, Field(ge=1, le=8)] = Field(
        default=1,
        description=(
            "Engine cores sharing each GPU (vLLM data-parallel ranks on one device; dense models, "
            "tensor_parallel_size 1). Each engine core runs the scheduler, input preparation and the vision "
            "encoder launches on one thread: where that thread is the limit, a second one on the same GPU "
            "keeps the GPU busy. gpu_memory_utilization stays the GPU's share for all of them together."
        ),
    )
    async_scheduling: bool | None = None
    extra_engine_args: dict[str, Any] = Field(
        default_factory=dict, description="Other vLLM engine args, by their Python name (max_logprobs: 5)"
    )
    env: dict[str, str] = Field(default_factory=dict, description="Environment variables for the engine process")

    @model_validator(mode="after")
    def _check_consistency(self) -> EngineConfig:
        if (
            self.enable_chunked_prefill is False
            and self.max_model_len is not None
            and self.max_num_batched_tokens is not None
            and self.max_num_batched_tokens < self.max_model_len
        ):
            raise ValueError(
                "max_num_batched_tokens must be >= max_model_len when enable_chunked_prefill is false "
                f"(got {self.max_num_batched_tokens} < {self.max_model_len})"
            )
        if (
            self.preprocessing_workers is not None
            and self.preprocessing_workers > 1
            and (self.mm_processor_cache_gb is None or self.mm_processor_cache_gb > 0)
        ):
            raise ValueError(
                "preprocessing_workers > 1 needs mm_processor_cache_gb: 0 "
                "(vLLM's multimodal processor cache is not thread-safe)"
            )
        if self.engines_per_gpu > 1 and self.tensor_parallel_size > 1:
            raise ValueError(
                f"engines_per_gpu {self.engines_per_gpu} needs tensor_parallel_size 1 "
                f"(got {self.tensor_parallel_size}): co-located engines each hold a whole model"
            )
        if self.engines_per_gpu > 1 and "kv_cache_memory_bytes" in self.extra_engine_args:
            raise ValueError(
                "engines_per_gpu > 1 sizes each engine's KV cache itself (kv_cache_memory_bytes from "
                "gpu_memory_utilization): leave kv_cache_memory_bytes out of extra_engine_args"
            )
        return self

    def mm_item_limit(self, modality: Modality) -> int | None:
        """Items of `modality` allowed per prompt (None: vLLM's default)."""
        limit = (self.limit_mm_per_prompt or {}).get(modality)
        return limit.count if isinstance(limit, MediaLimit) else limit

    @property
    def name_for_clients(self) -> str:
        return self.served_model_name or Path(self.model).name

    def tuned_fields(self) -> dict[str, Any]:
        """The settings that differ from vLLM's defaults (what a trial changed)."""
        return self.model_dump(exclude_defaults=True, exclude={"model", "served_model_name"})

    @property
    def vllm_data_parallel_size(self) -> int:
        """vLLM's data-parallel ranks: `data_parallel_size` GPUs x `engines_per_gpu` engines on each."""
        return self.data_parallel_size * self.engines_per_gpu

    @property
    def effective_gpu_memory_utilization(self) -> float:
        """The share of the GPU the deployment may use: `gpu_memory_utilization`, or vLLM's default when unset."""
        return self.gpu_memory_utilization if self.gpu_memory_utilization is not None else VLLM_DEFAULT_GPU_MEMORY_UTILIZATION

    @property
    def utilization_per_engine(self) -> float:
        """The share of the GPU each engine may use: the deployment's share split between `engines_per_gpu`."""
        return self.effective_gpu_memory_utilization / self.engines_per_gpu

    def to_vllm_cli_args(self, kv_cache_memory_bytes: int | None = None) -> list[str]:
        """The one translation of an EngineConfig into `vllm serve` arguments (model excluded).

        With `engines_per_gpu` > 1 each engine gets its share of `gpu_memory_utilization` and a fixed KV cache of
        `kv_cache_memory_bytes` (from `autotune.memory_model.colocated_kv_cache_bytes`): vLLM sizes the KV cache by
        the device's free-memory change during its start, which counts the other engines' allocations when
        they start together on the same GPU. The launcher places the ranks
        (`serving.engines.colocation.place_engines_on_shared_gpus`).
        """
        if self.engines_per_gpu > 1 and kv_cache_memory_bytes is None:
            raise ValueError("engines_per_gpu > 1 needs each engine's KV cache size (kv_cache_memory_bytes)")
        args: list[str] = ["--served-model-name", self.name_for_clients]
        colocated = self.engines_per_gpu > 1
        simple: dict[str, Any] = {
            "dtype": self.dtype,
            "load_format": self.load_format,
            "max_model_len": self.max_model_len,
            "max_num_seqs": self.max_num_seqs,
            "max_num_batched_tokens": self.max_num_batched_tokens,
            "gpu_memory_utilization": round(self.utilization_per_engine, 4) if colocated else self.gpu_memory_utilization,
            "kv_cache_memory_bytes": kv_cache_memory_bytes if colocated else None,
            "kv_cache_dtype": None if self.kv_cache_dtype == "auto" else self.kv_cache_dtype,
            "quantization": self.quantization,
            "mm_processor_cache_gb": self.mm_processor_cache_gb,
            "renderer_num_workers": self.preprocessing_workers,
            "api_server_count": self.api_server_count,
            "tensor_parallel_size": None if self.tensor_parallel_size == 1 else self.tensor_parallel_size,
            "data_parallel_size": None if self.vllm_data_parallel_size == 1 else self.vllm_data_parallel_size,
        }
        simple.update(self.extra_engine_args)
        for name, value in simple.items():
            if value is None:
                continue
            flag = "--" + name.replace("_", "-")
            if isinstance(value, bool):
                args.append(flag if value else "--no-" + name.replace("_", "-"))
            elif isinstance(value, (dict, list)):
                args += [flag, json.dumps(value)]
            else:
                args += [flag, str(value)]
        for name, value in (
            ("enable_prefix_caching", self.enable_prefix_caching),
            ("enable_chunked_prefill", self.enable_chunked_prefill),
            ("async_scheduling", self.async_scheduling),
        ):
            if value is not None:
                args.append(("--" if value else "--no-") + name.replace("_", "-"))
        if self.limit_mm_per_prompt is not None:
            limits = {
                key: value.model_dump(exclude_none=True) if isinstance(value, MediaLimit) else value
                for key, value in self.limit_mm_per_prompt.items()
            }
            args += ["--limit-mm-per-prompt", json.dumps(limits)]
        if self.mm_processor_kwargs is not None:
            args += ["--mm-processor-kwargs", json.dumps(self.mm_processor_kwargs)]
        return args


class ServingSettings(StrictModel):
    """How the HTTP server is exposed and what it accepts."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    api_key: SecretStr | None = Field(default=None, description="If set, every route but /health needs 'Authorization: Bearer KEY'")
    max_request_bytes: Annotated[int, Field(ge=1024)] = 20 * 1024 * 1024
    max_image_bytes: Annotated[int, Field(ge=1024)] = 10 * 1024 * 1024
    max_image_pixels: Annotated[int, Field(ge=64)] = 40_000_000
    max_images_per_request: Annotated[int, Field(ge=0)] = 8
    image_fetch_timeout_s: Annotated[float, Field(gt=0, le=120)] = 5.0
    allowed_image_hosts: list[str] = Field(
        default_factory=list, description="If non-empty, image URLs may only name these hosts"
    )
    allow_private_image_urls: bool = Field(
        default=False, description="Allow image URLs that resolve to private, loopback or link-local addresses"
    )
    max_queued_requests: Annotated[int, Field(ge=1)] = 4096
    http_keep_alive_s: Annotated[int, Field(ge=1, le=3600)] = Field(
        default=75,
        description="How long the server keeps an idle client connection open (uvicorn's keep-alive; vLLM's "
        "VLLM_HTTP_TIMEOUT_KEEP_ALIVE, 5 s by default). Longer than clients and load balancers keep theirs (aiohttp "
        "15 s, `vllm bench serve` 60 s, cloud load balancers 60 s), so that none sends a request on a connection the "
        "server is closing ('Connection reset by peer'); 75 s is nginx's default",
    )
    web_ui: bool = Field(
        default=True, description="Serve the chat page at /ui (its data comes from the API, with the API key when set)"
    )
    warmup_requests: Annotated[int, Field(ge=0, le=1024)] = Field(
        default=48,
        description="vLLM engine: chat completions each API server sends itself at once before /health says ready "
        "(prompt, image and output lengths varied, so that kernels compiled at first use compile before traffic; "
        "0: none)",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_serializer("api_key", when_used="json")
    def _hide_key(self, value: SecretStr | None) -> str | None:
        return None if value is None else "**********"


class ObjectiveRecord(StrictModel):
    name: str
    direction: Literal["maximize", "minimize"]
    value: float | None = None


class Provenance(StrictModel):
    """Where a tuned config came from."""

    study: str | None = None
    trial_number: int | None = None
    engine: EngineKind = EngineKind.VLLM
    simulated: bool = False
    objectives: list[ObjectiveRecord] = Field(default_factory=list)
    metrics: dict[str, float | None] = Field(default_factory=dict)
    baseline_metrics: dict[str, float | None] = Field(default_factory=dict, description="Trial 0, vLLM's defaults")
    workload: dict[str, Any] = Field(default_factory=dict)
    load: dict[str, Any] = Field(default_factory=dict)
    hardware: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    notes: str | None = None


class TunedConfig(StrictModel):
    """The file that `autotune tune` writes and `autotune serve --config` loads unchanged."""

    schema_version: Literal[1] = SCHEMA_VERSION
    engine: EngineKind = EngineKind.VLLM
    engine_config: EngineConfig
    serving: ServingSettings = Field(default_factory=ServingSettings)
    simulator_profile: str | None = Field(
        default=None, description="Profile JSON for the simulated engine; default: the shipped one"
    )
    provenance: Provenance = Field(default_factory=Provenance)

    def to_yaml(self) -> str:
        data = self.model_dump(mode="json", exclude_none=True)
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)

    def write(self, path: str | Path) -> Path:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(target.suffix + ".tmp")
        tmp.write_text(self.to_yaml())
        tmp.replace(target)
        return target


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; every failure is a ConfigError naming the file."""
    source = Path(path)
    if not source.is_file():
        raise ConfigError(f"{source}: no such file")
    try:
        data = yaml.safe_load(source.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not a text file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def load_tuned_config(path: str | Path) -> TunedConfig:
    data = read_yaml_mapping(path)
    try:
        tuned = TunedConfig.model_validate(data)
    except ValidationError as exc:
        raise config_error_from(exc, path) from None
    _warn_if_the_model_is_elsewhere(tuned, path)
    return tuned


_WARNED_MISSING_MODELS: set[str] = set()


def _warn_if_the_model_is_elsewhere(tuned: TunedConfig, path: str | Path) -> None:
    """A config written on another machine (best.yaml of a GPU host) names a model folder of that machine: say so
    once per model and process, before an engine fails on it."""
    model = tuned.engine_config.model
    if model in _WARNED_MISSING_MODELS or Path(model).expanduser().exists() or looks_like_hub_id(model):
        return
    _WARNED_MISSING_MODELS.add(model)
    log.warning(
        "%s: engine_config.model %s does not exist on this machine (the config was written where it did): "
        "put the model there, or edit engine_config.model in the file", path, model,
    )
