"""Fit a few simulator-profile coefficients to calibration points.

Each point is predicted by the virtual-time simulator (`virtual.predict`) under a candidate profile.
The loss is the mean, over throughput and TTFT p50, of the median absolute relative error (a small
mean-error term breaks ties, so the search has a slope where the median is flat). Parameters are
searched in log space within bounds: a robust least-squares pass over log ratios (scipy `least_squares`,
soft-L1 loss) from the base profile, then Nelder-Mead on the loss itself; the base profile is kept if
nothing beats it. Deterministic: the simulator is, the search starts from the base profile, and the
k-fold split is seeded.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from autotune.calibrate.dataset import CalibrationPoint
from autotune.calibrate.virtual import Prediction, predict, relative_error
from autotune.errors import ConfigError
from serving.engines.profile import MedianErrors, SimulatorProfile

QUANT_FACTOR = "gpu_costs.quantization_compute_factor."
# Dotted profile field -> (low, high): the coefficients `autotune calibrate` may fit, and their bounds.
PARAMETER_BOUNDS: dict[str, tuple[float, float]] = {
    "frontend.request_ms": (0.1, 50.0),
    "frontend.image_preprocess_ms_base": (0.1, 100.0),
    "frontend.streamed_token_ms": (0.001, 1.0),
    "gpu_costs.step_overhead_ms": (0.05, 50.0),
    "gpu_costs.decode_ms_per_seq": (0.001, 1.0),
    "gpu_costs.prefill_ms_per_token": (0.0001, 0.1),
}
QUANT_FACTOR_BOUNDS = (0.2, 5.0)
MIN_POINTS_PER_QUANTIZATION = 2  # fit a quantization's compute factor only with at least this many of its points
MIN_POINTS_FOR_HOLD_OUT = 8
DEFAULT_FOLDS = 4
ERROR_CAP = 10.0  # an infeasible prediction counts as 1000% off
TIE_BREAK_WEIGHT = 0.1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PointFit(_Model):
    """One point: measured figures next to the simulator's prediction (a prediction, not a measurement)."""

    source: str
    predicted: Prediction
    throughput_error: float | None = Field(description="|predicted - measured| / measured")
    ttft_p50_error: float | None


class FitResult(_Model):
    parameters: dict[str, float] = Field(description="Fitted dotted field -> value")
    profile: SimulatorProfile
    before: MedianErrors
    after: MedianErrors
    loss_before: float
    loss_after: float
    evaluations: int
    before_points: list[PointFit] = Field(description="Each point under the base profile")
    after_points: list[PointFit] = Field(description="Each point under the fitted profile")


class HoldOut(_Model):
    method: str
    errors: MedianErrors | None = None
    points: list[PointFit] = Field(default_factory=list, description="Each point predicted by a fit that did not see it")


def bounds_for(name: str) -> tuple[float, float]:
    if name.startswith(QUANT_FACTOR):
        return QUANT_FACTOR_BOUNDS
    if name not in PARAMETER_BOUNDS:
        allowed = ", ".join([*PARAMETER_BOUNDS, QUANT_FACTOR + "<quantization>"])
        raise ConfigError(f"fit parameter {name!r}: not one of {allowed}")
    return PARAMETER_BOUNDS[name]


def default_parameters(points: Sequence[CalibrationPoint]) -> list[str]:
    """The base coefficients, plus each quantization's compute factor when enough points use it."""
    names = list(PARAMETER_BOUNDS)
    counts: dict[str, int] = {}
    for point in points:
        if point.engine_config.quantization is not None:
            counts[point.engine_config.quantization] = counts.get(point.engine_config.quantization, 0) + 1
    names += [QUANT_FACTOR + q for q, n in sorted(counts.items()) if n >= MIN_POINTS_PER_QUANTIZATION]
    return names


def get_value(profile: SimulatorProfile, name: str) -> float:
    if name.startswith(QUANT_FACTOR):
        return float(profile.gpu_costs.quantization_compute_factor.get(name.removeprefix(QUANT_FACTOR), 1.0))  # type: ignore[call-overload]
    section, field = name.split(".", 1)
    return float(getattr(getattr(profile, section), field))


def with_values(profile: SimulatorProfile, values: Mapping[str, float]) -> SimulatorProfile:
    """A copy of `profile` with the dotted fields set (validated)."""
    data: dict[str, Any] = profile.model_dump(mode="json")
    for name, value in values.items():
        bounds_for(name)
        if name.startswith(QUANT_FACTOR):
            data["gpu_costs"]["quantization_compute_factor"][name.removeprefix(QUANT_FACTOR)] = float(value)
        else:
            section, field = name.split(".", 1)
            data[section][field] = float(value)
    return SimulatorProfile.model_validate(data)


# -- predictions and errors ---------------------------------------------------------------------------


def _predict_point(profile: SimulatorProfile, point: CalibrationPoint) -> Prediction:
    return predict(
        profile, point.engine_config, point.workload, concurrency=point.concurrency, num_requests=point.num_requests
    )


def _predict_packed(args: tuple[SimulatorProfile, CalibrationPoint]) -> Prediction:
    return _predict_point(*args)


def predict_points(
    profile: SimulatorProfile, points: Sequence[CalibrationPoint], executor: Executor | None = None
) -> list[PointFit]:
    if executor is None:
        predictions = [_predict_point(profile, point) for point in points]
    else:
        predictions = list(executor.map(_predict_packed, [(profile, point) for point in points]))
    fits: list[PointFit] = []
    for point, predicted in zip(points, predictions, strict=True):
        fits.append(
            PointFit(
                source=point.source,
                predicted=predicted,
                throughput_error=relative_error(predicted.throughput_rps if predicted.feasible else None, point.throughput_rps),
                ttft_p50_error=relative_error(predicted.ttft_ms_p50 if predicted.feasible else None, point.ttft_ms_p50),
            )
        )
    return fits


def _capped(values: Sequence[float | None]) -> list[float]:
    return [min(ERROR_CAP, v) for v in values if v is not None]


def median_errors(fits: Sequence[PointFit]) -> MedianErrors:
    """Median absolute relative errors, in percent."""
    throughput = _capped([f.throughput_error for f in fits])
    ttft = _capped([f.ttft_p50_error for f in fits])
    return MedianErrors(
        throughput_pct=100 * statistics.median(throughput) if throughput else None,
        ttft_p50_pct=100 * statistics.median(ttft) if ttft else None,
    )


def loss(fits: Sequence[PointFit]) -> float:
    """Mean over the metrics of the median absolute relative error, plus a small mean-error tie-breaker."""
    medians, everything = [], []
    for errors in (_capped([f.throughput_error for f in fits]), _capped([f.ttft_p50_error for f in fits])):
        if errors:
            medians.append(statistics.median(errors))
            everything += errors
    if not medians:
        return ERROR_CAP
    return statistics.fmean(medians) + TIE_BREAK_WEIGHT * statistics.fmean(everything)


# -- the search ----------------------------------------------------------------------------------------


class _BudgetSpent(Exception):
    pass


class _Evaluator:
    """Profile for a log-space vector -> predictions; counts and caches evaluations, keeps the best."""

    def __init__(
        self, base: SimulatorProfile, names: list[str], points: Sequence[CalibrationPoint], *,
        max_evals: int, executor: Executor | None,
    ) -> None:
        self.base, self.names, self.points = base, names, points
        self.max_evals, self.executor = max_evals, executor
        self.low = np.log([bounds_for(n)[0] for n in names])
        self.high = np.log([bounds_for(n)[1] for n in names])
        self.evaluations = 0
        self._cache: dict[tuple[float, ...], list[PointFit]] = {}
        self.best_x: np.ndarray | None = None
        self.best_loss = math.inf

    def values(self, x: np.ndarray) -> dict[str, float]:
        clipped = np.clip(x, self.low, self.high)
        return {name: float(math.exp(v)) for name, v in zip(self.names, clipped, strict=True)}

    def fits(self, x: np.ndarray) -> list[PointFit]:
        key = tuple(round(float(v), 6) for v in np.clip(x, self.low, self.high))
        if key not in self._cache:
            if self.evaluations >= self.max_evals:
                raise _BudgetSpent
            self.evaluations += 1
            fits = predict_points(with_values(self.base, self.values(x)), self.points, self.executor)
            self._cache[key] = fits
            value = loss(fits)
            if value < self.best_loss:
                self.best_loss, self.best_x = value, np.array(key)
        return self._cache[key]

    def loss(self, x: np.ndarray) -> float:
        return loss(self.fits(x))

    def residuals(self, x: np.ndarray) -> np.ndarray:
        out: list[float] = []
        for point, fit in zip(self.points, self.fits(x), strict=True):
            for measured, predicted in (
                (point.throughput_rps, fit.predicted.throughput_rps),
                (point.ttft_ms_p50, fit.predicted.ttft_ms_p50),
            ):
                if measured is None or measured <= 0:
                    continue
                ok = fit.predicted.feasible and predicted is not None and predicted > 0
                out.append(math.log(predicted / measured) if ok else math.log(ERROR_CAP))  # type: ignore[operator]
        return np.asarray(out)


def _executor(jobs: int, points: int) -> ProcessPoolExecutor | None:
    workers = min(jobs, points)
    return ProcessPoolExecutor(max_workers=workers) if workers > 1 else None


def fit_profile(
    base: SimulatorProfile,
    points: Sequence[CalibrationPoint],
    *,
    parameters: Sequence[str] | None = None,
    max_evals: int = 120,
    jobs: int = 1,
) -> FitResult:
    """Fit `parameters` (default: `default_parameters(points)`) of `base` to the points."""
    from scipy.optimize import least_squares, minimize

    if not points:
        raise ConfigError("no calibration points to fit")
    names = list(parameters) if parameters is not None else default_parameters(points)
    for name in names:
        bounds_for(name)
    executor = _executor(jobs, len(points))
    try:
        evaluator = _Evaluator(base, names, points, max_evals=max_evals, executor=executor)
        x0 = np.clip(np.log([max(get_value(base, n), 1e-12) for n in names]), evaluator.low, evaluator.high)
        before_fits = evaluator.fits(x0)
        try:
            least_squares(
                evaluator.residuals, x0, bounds=(evaluator.low, evaluator.high), loss="soft_l1", f_scale=0.1,
                diff_step=0.05, x_scale=1.0, max_nfev=max(1, max_evals // 2),
            )
            start = evaluator.best_x if evaluator.best_x is not None else x0
            simplex = [start] + [np.clip(start + 0.3 * np.eye(len(names))[i], evaluator.low, evaluator.high) for i in range(len(names))]
            minimize(
                evaluator.loss, start, method="Nelder-Mead", bounds=list(zip(evaluator.low, evaluator.high, strict=True)),
                options={"initial_simplex": np.array(simplex), "maxfev": max_evals, "xatol": 1e-3, "fatol": 1e-4},
            )
        except _BudgetSpent:
            pass
        best_x = evaluator.best_x if evaluator.best_x is not None else x0
        values = evaluator.values(best_x)
        after_fits = evaluator.fits(best_x)
        return FitResult(
            parameters=values,
            profile=with_values(base, values),
            before=median_errors(before_fits),
            after=median_errors(after_fits),
            loss_before=loss(before_fits),
            loss_after=loss(after_fits),
            evaluations=evaluator.evaluations,
            before_points=before_fits,
            after_points=after_fits,
        )
    finally:
        if executor is not None:
            executor.shutdown()


def held_out_errors(
    base: SimulatorProfile,
    points: Sequence[CalibrationPoint],
    *,
    parameters: Sequence[str] | None = None,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    max_evals: int = 120,
    jobs: int = 1,
) -> HoldOut:
    """k-fold cross-validation (seeded split): each point is predicted by a fit made without it."""
    if folds < 2:
        return HoldOut(method="none (hold-out disabled)")
    if len(points) < MIN_POINTS_FOR_HOLD_OUT:
        return HoldOut(method=f"none ({len(points)} points < {MIN_POINTS_FOR_HOLD_OUT}: in-sample errors only)")
    k = min(folds, len(points))
    names = list(parameters) if parameters is not None else default_parameters(points)
    order = np.random.default_rng(seed).permutation(len(points))
    held: dict[int, PointFit] = {}
    for fold in range(k):
        test = sorted(int(i) for i in order[fold::k])
        train = [points[i] for i in range(len(points)) if i not in test]
        fitted = fit_profile(base, train, parameters=names, max_evals=max_evals, jobs=jobs)
        for index, fit in zip(test, predict_points(fitted.profile, [points[i] for i in test]), strict=True):
            held[index] = fit
    ordered = [held[i] for i in range(len(points))]
    return HoldOut(method=f"{k}-fold cross-validation (seed {seed})", errors=median_errors(ordered), points=ordered)
