"""The calibrated profile: the base profile with fitted coefficients, `calibrated: true` and how it was made."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from autotune.calibrate.dataset import CalibrationDataset
from autotune.calibrate.fit import FitResult, HoldOut
from serving.engines.profile import CalibrationInfo, SimulatorProfile

OBJECTIVE = "mean over throughput and TTFT p50 of the median absolute relative error (closed-loop runs)"


def calibrated_profile(
    base: SimulatorProfile, base_label: str, fit: FitResult, dataset: CalibrationDataset, hold_out: HoldOut
) -> SimulatorProfile:
    points = dataset.points
    info = CalibrationInfo(
        date=datetime.now(UTC),
        base_profile=base_label,
        source_folders=dataset.folders,
        points=len(points),
        skipped=dataset.skip_counts(),
        objective=OBJECTIVE,
        fitted_parameters=fit.parameters,
        median_abs_error_before=fit.before,
        median_abs_error_in_sample=fit.after,
        median_abs_error_held_out=hold_out.errors,
        held_out_method=hold_out.method,
        vllm_versions=sorted({p.vllm_version for p in points if p.vllm_version}),
        gpu_names=sorted({p.gpu_name for p in points if p.gpu_name}),
    )
    name = base.name.removesuffix("-calibrated") + "-calibrated"
    description = (
        f"{base.name} with {len(fit.parameters)} coefficients fitted to {len(points)} GPU measurements "
        f"({', '.join(info.gpu_names) or 'GPU unknown'}, vLLM {', '.join(info.vllm_versions) or 'unknown'}) by autotune calibrate. "
        "Its figures are still simulator predictions, not measurements."
    )
    return fit.profile.model_copy(update={"name": name, "description": description, "calibrated": True, "calibration": info})


def write_profile(profile: SimulatorProfile, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(profile.model_dump(mode="json", exclude_none=True), indent=2) + "\n")
    tmp.replace(path)
    return path
