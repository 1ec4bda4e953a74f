"""`autotune calibrate` as one library call: collect points, fit, hold out, build the profile and report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from autotune.calibrate.dataset import CalibrationDataset, collect_points
from autotune.calibrate.fit import DEFAULT_FOLDS, FitResult, HoldOut, default_parameters, fit_profile, get_value, held_out_errors
from autotune.calibrate.output import calibrated_profile
from autotune.calibrate.report import CalibrationReport, build_report
from autotune.errors import ConfigError
from serving.engines.profile import DEFAULT_PROFILE_NAME, SimulatorProfile


class CalibrationSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    folders: list[Path] = Field(min_length=1)
    base_profile: Path | None = Field(default=None, description="None: the shipped profile")
    parameters: list[str] | None = Field(default=None, description="None: the default set for the points")
    max_evals: int = Field(default=120, ge=1, description="Simulator evaluations per fit")
    folds: int = Field(default=DEFAULT_FOLDS, ge=0, description="k of the k-fold hold-out (0 or 1: none)")
    seed: int = 0
    jobs: int = Field(default=1, ge=1, description="Processes predicting points in parallel")


class CalibrationOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    dataset: CalibrationDataset
    fit: FitResult
    hold_out: HoldOut
    profile: SimulatorProfile
    report: CalibrationReport


def no_points_error(dataset: CalibrationDataset) -> ConfigError:
    folders = ", ".join(dataset.folders)
    if not dataset.skipped:
        return ConfigError(f"no calibration points in {folders}: no result files (result.json, bench-*.json) found")
    return ConfigError(
        f"no calibration points in {folders}: {len(dataset.skipped)} result file(s), none usable:\n" + dataset.describe_skips()
    )


def calibrate(settings: CalibrationSettings) -> CalibrationOutcome:
    base = SimulatorProfile.load(settings.base_profile)
    base_label = str(settings.base_profile) if settings.base_profile else f"autotune/profiles/{DEFAULT_PROFILE_NAME}"
    dataset = collect_points(settings.folders)
    if not dataset.points:
        raise no_points_error(dataset)
    names = settings.parameters or default_parameters(dataset.points)
    fit = fit_profile(base, dataset.points, parameters=names, max_evals=settings.max_evals, jobs=settings.jobs)
    hold_out = held_out_errors(
        base, dataset.points, parameters=names, folds=settings.folds, seed=settings.seed,
        max_evals=settings.max_evals, jobs=settings.jobs,
    )
    profile = calibrated_profile(base, base_label, fit, dataset, hold_out)
    report = build_report(
        dataset, base_profile=base_label, base_parameters={n: get_value(base, n) for n in names}, fit=fit, hold_out=hold_out
    )
    return CalibrationOutcome(dataset=dataset, fit=fit, hold_out=hold_out, profile=profile, report=report)


def run_folders(folders: Sequence[str | Path], **options: object) -> CalibrationOutcome:
    """Convenience for scripts: `run_folders(["experiments/h100-qwen3-vl-4b"], jobs=8)`."""
    return calibrate(CalibrationSettings(folders=[Path(f) for f in folders], **options))  # type: ignore[arg-type]
