"""Tuned configs and simulator profiles for the reliability tests (simulated engine only)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from autotune.config import EngineConfig, EngineKind, ServingSettings, TunedConfig
from helpers.servers import MODEL_DIR

MODEL_NAME = Path(MODEL_DIR).name


def write_profile(
    path: Path,
    *,
    gpu: dict[str, float] | None = None,
    gpu_costs: dict[str, float] | None = None,
    frontend: dict[str, float] | None = None,
) -> Path:
    """The shipped simulator profile with some coefficients replaced (it stays labeled uncalibrated)."""
    data: dict[str, Any] = json.loads(
        (resources.files("autotune") / "profiles" / "h100-qwen3-vl-4b.json").read_text()
    )
    data["name"] = f"{data['name']}-reliability-test"
    data["calibrated"] = False
    data["gpu"].update(gpu or {})
    data["gpu_costs"].update(gpu_costs or {})
    data["frontend"].update(frontend or {})
    path.write_text(json.dumps(data, indent=2))
    return path


def fast_profile(path: Path) -> Path:
    """Near-zero modeled costs: requests finish in milliseconds (for fuzzing input handling)."""
    return write_profile(
        path,
        gpu={"memory_bandwidth_gb_s": 1e7},  # no weight-read floor under each step
        gpu_costs={"step_overhead_ms": 0.02, "decode_ms_per_seq": 0.0, "prefill_ms_per_token": 0.0,
                   "vision_encoder_ms_per_image_token": 0.0},
        frontend={"request_ms": 0.05, "streamed_token_ms": 0.0, "image_preprocess_ms_base": 0.05,
                  "image_preprocess_ms_per_megapixel": 0.0, "image_cache_hit_ms": 0.0},
    )


def write_config(
    path: Path,
    *,
    profile: Path | None = None,
    engine: dict[str, Any] | None = None,
    serving: dict[str, Any] | None = None,
) -> Path:
    tuned = TunedConfig(
        engine=EngineKind.SIMULATED,
        engine_config=EngineConfig(model=MODEL_DIR, **{"max_model_len": 1024, **(engine or {})}),
        serving=ServingSettings(**(serving or {})),
        simulator_profile=str(profile) if profile is not None else None,
    )
    return tuned.write(path)
