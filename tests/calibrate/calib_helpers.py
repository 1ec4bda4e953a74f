"""Helpers of the calibration tests: a small synthetic workload, points and BenchResult files made by the
simulator itself under a profile the test chooses (the ground truth), with seeded noise.

A module with its own name (not `conftest`): several test folders have a conftest.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from autotune.bench.workload import Workload
from autotune.calibrate.dataset import CalibrationPoint
from autotune.calibrate.fit import with_values
from autotune.calibrate.virtual import predict
from autotune.config import EngineConfig
from helpers.servers import MODEL_DIR
from serving.engines.profile import SimulatorProfile

BASE = SimulatorProfile.load()
WORKLOAD = Workload.model_validate(
    {
        "name": "tiny-vlm",
        "kind": "synthetic",
        "synthetic": {"input_tokens": 32, "output_tokens": 16, "images": {"count": 1, "sizes": ["448x448"]}},
    }
)
# (engine settings, concurrency): frontend-bound and batch-bound shapes, so each coefficient shows
SHAPES: list[tuple[dict[str, Any], int]] = [
    ({}, 4),
    ({}, 24),
    ({"max_num_seqs": 8}, 24),
    ({"api_server_count": 4, "preprocessing_workers": 4, "mm_processor_cache_gb": 0}, 24),
    ({"api_server_count": 4, "preprocessing_workers": 4, "mm_processor_cache_gb": 0}, 48),
    ({"max_num_seqs": 4}, 16),
]
NUM_REQUESTS = 64


def engine(**settings: Any) -> EngineConfig:
    return EngineConfig(model=MODEL_DIR, max_model_len=4096, **settings)


def truth_profile(values: dict[str, float]) -> SimulatorProfile:
    return with_values(BASE, values)


def measured_points(truth: SimulatorProfile, *, noise: float, seed: int = 0, shapes=SHAPES) -> list[CalibrationPoint]:  # type: ignore[no-untyped-def]
    """Points 'measured' on the ground-truth profile, each figure times (1 + N(0, noise))."""
    rng = np.random.default_rng(seed)
    points = []
    for index, (settings, concurrency) in enumerate(shapes):
        config = engine(**settings)
        figures = predict(truth, config, WORKLOAD, concurrency=concurrency, num_requests=NUM_REQUESTS)
        assert figures.feasible and figures.ttft_ms_p50 is not None
        points.append(
            CalibrationPoint(
                source=f"truth-{index}",
                engine_config=config,
                workload=WORKLOAD,
                concurrency=concurrency,
                num_requests=NUM_REQUESTS,
                throughput_rps=figures.throughput_rps * (1 + rng.normal(0, noise)),
                ttft_ms_p50=figures.ttft_ms_p50 * (1 + rng.normal(0, noise)),
                tpot_ms_p50=figures.tpot_ms_p50,
                gpu_name="NVIDIA H100 80GB HBM3",
                vllm_version="0.24.0",
            )
        )
    return points


def bench_result(
    point: CalibrationPoint, *, simulated: bool = False, mode: str = "concurrency", server_config: bool = True,
    completed: int | None = None,
) -> dict[str, Any]:
    """A BenchResult JSON mapping for a point (the fields `autotune bench` writes that calibration reads)."""
    done = point.num_requests if completed is None else completed
    load: dict[str, Any] = {"mode": mode, "num_requests": point.num_requests}
    if mode == "concurrency":
        load["concurrency"] = point.concurrency
    else:
        load["rate_rps"] = 10.0
    config = {
        "schema_version": 1,
        "engine": "simulated" if simulated else "vllm",
        "engine_config": point.engine_config.model_dump(mode="json"),
        "provenance": {"simulated": simulated},
    }
    return {
        "kind": "autotune-bench-result",
        "url": "http://127.0.0.1:1",
        "workload": point.workload.model_dump(mode="json"),
        "load": load,
        "server_config": config if server_config else None,
        "simulated": simulated,
        "versions": {"vllm": "0.24.0"},
        "hardware": {"gpus": ["NVIDIA H100 80GB HBM3"]},
        "summary": {
            "concurrency": point.concurrency,
            "completed": done,
            "failed": point.num_requests - done,
            "duration_s": 1.0,
            "throughput_rps": point.throughput_rps if done else 0.0,
            "error_rate": (point.num_requests - done) / point.num_requests,
            "ttft_ms": {"p50": point.ttft_ms_p50},
            "tpot_ms": {"p50": point.tpot_ms_p50},
        },
    }


def write_json(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path
