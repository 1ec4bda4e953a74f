"""SimulatorProfile: the coefficients of the simulated engine, read from a JSON file.

The shipped profile (`autotune/profiles/h100-qwen3-vl-4b.json`) is NOT calibrated against a GPU
(`"calibrated": false`); it is a plausible stand-in so that tuning logic can be exercised on CPU.
"""

from __future__ import annotations

import json
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Annotated

from pydantic import Field, ValidationError

from autotune.base_models import FrozenModel
from autotune.config import Quantization
from autotune.errors import ConfigError, config_error_from
from autotune.memory_model import ModelInfo

DEFAULT_PROFILE_NAME = "h100-qwen3-vl-4b.json"

PositiveMs = Annotated[float, Field(ge=0)]


class GpuSpec(FrozenModel):
    name: str
    memory_gib: Annotated[float, Field(gt=0)]
    memory_bandwidth_gb_s: Annotated[float, Field(gt=0, description="Effective (achieved) HBM bandwidth")]


class GpuCosts(FrozenModel):
    """One engine step costs: overhead + decodes + prefill tokens + weight read + KV read + vision encoder."""

    step_overhead_ms: PositiveMs
    decode_ms_per_seq: PositiveMs
    prefill_ms_per_token: PositiveMs
    vision_encoder_ms_per_image_token: PositiveMs
    activation_reserve_gib: Annotated[float, Field(ge=0)] = 4.0
    quantization_compute_factor: dict[Quantization, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict, description="Multiplies prefill and decode compute for a quantized model"
    )
    startup_s: Annotated[float, Field(ge=0, le=600)] = Field(
        default=0.0, description="Simulated model load time before /health turns 200"
    )


class FrontendCosts(FrozenModel):
    """API-server CPU work. Each frontend (api_server_count) has one event loop that pays request_ms and
    streamed_token_ms per output token; each has `preprocessing_workers` workers that pay image preprocessing."""

    request_ms: PositiveMs
    streamed_token_ms: PositiveMs
    image_preprocess_ms_base: PositiveMs
    image_preprocess_ms_per_megapixel: PositiveMs
    image_cache_hit_ms: PositiveMs
    image_cache_bytes_per_pixel: Annotated[float, Field(gt=0)] = 12.0


class MedianErrors(FrozenModel):
    """Median absolute relative error of the predictions, in percent (None: not measured by any point)."""

    throughput_pct: float | None = None
    ttft_p50_pct: float | None = None


class CalibrationInfo(FrozenModel):
    """How a calibrated profile was fitted (written by `autotune calibrate`)."""

    date: datetime
    base_profile: str
    source_folders: list[str]
    points: int
    skipped: dict[str, int] = Field(default_factory=dict, description="Result files not used, by reason")
    objective: str
    fitted_parameters: dict[str, float] = Field(description="Dotted profile field -> fitted value")
    median_abs_error_before: MedianErrors = Field(description="The base profile on the same points")
    median_abs_error_in_sample: MedianErrors
    median_abs_error_held_out: MedianErrors | None = None
    held_out_method: str = Field(description="e.g. '4-fold cross-validation', or why none was done")
    vllm_versions: list[str] = Field(default_factory=list)
    gpu_names: list[str] = Field(default_factory=list)


class SimulatorProfile(FrozenModel):
    name: str
    description: str = ""
    calibrated: bool = Field(description="True only when the coefficients were fitted to GPU measurements")
    gpu: GpuSpec
    model: ModelInfo
    gpu_costs: GpuCosts
    frontend: FrontendCosts
    calibration: CalibrationInfo | None = Field(default=None, description="Set by `autotune calibrate`")

    @classmethod
    def load(cls, path: str | Path | None = None) -> SimulatorProfile:
        """Load `path`, or the shipped default profile when None; errors name the file and the field."""
        if path is None:
            source = resources.files("autotune") / "profiles" / DEFAULT_PROFILE_NAME
            text = source.read_text()
            where: str | Path = f"autotune/profiles/{DEFAULT_PROFILE_NAME}"
        else:
            where = Path(path)
            if not where.is_file():
                raise ConfigError(f"{where}: no such simulator profile")
            text = where.read_text()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: not valid JSON: {exc}") from None
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise config_error_from(exc, where) from None
