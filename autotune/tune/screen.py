"""Screening: spend GPU trials only on configs the (calibrated) simulator predicts to be good.

With `autotune tune --screen K`, before each real trial K candidate configs are drawn from the study's
sampler (in a throw-away in-memory copy of the study, so they never become trials), each is predicted
by the virtual-time simulator at the study's workload and concurrency, and only the best predicted one is
enqueued (`study.enqueue_trial`); the others are not served. A queued trial (vLLM's defaults, one the user
enqueued) runs first, unscreened. The trial records `screened_from`, `predicted_throughput_rps`,
`predicted_objective`, `predicted_ttft_ms_p50`, `prediction_profile` and what was skipped
(`screen_skipped`); all are simulator predictions, never measurements.

The profile must be calibrated (`autotune calibrate`) unless `allow_uncalibrated`.
`screening_savings` looks back at a finished study: had the measured configs been tried in predicted
order, how many GPU trials would it have taken to get within X% of the best?
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from pydantic import BaseModel, ConfigDict, Field

from autotune.bench.workload import Workload, resolve_workload
from autotune.calibrate.virtual import Prediction, predict
from autotune.config import EngineConfig
from autotune.errors import ConfigError
from autotune.space import InvalidTrialConfig, SearchSpace, config_hash
from autotune.tune import attrs
from autotune.tune.samplers import make_sampler
from serving.engines.profile import SimulatorProfile

log = logging.getLogger(__name__)

SCREENED_FROM = "screened_from"
PREDICTED_THROUGHPUT = "predicted_throughput_rps"
PREDICTED_OBJECTIVE = "predicted_objective"
PREDICTED_TTFT = "predicted_ttft_ms_p50"
PREDICTION_PROFILE = "prediction_profile"
SCREEN_SKIPPED = "screen_skipped"
PREDICTION_NOTE = "simulator prediction, not a measurement"
DEFAULT_SCREEN_REQUESTS = 256


class ScreenSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    candidates: Annotated[int, Field(ge=2, le=1000)] = Field(description="Configs predicted per GPU trial")
    profile: Path | None = Field(default=None, description="Simulator profile; None: the shipped one")
    allow_uncalibrated: bool = Field(default=False, description="Screen with a profile that says calibrated: false")


def load_screen_profile(settings: ScreenSettings) -> SimulatorProfile:
    profile = SimulatorProfile.load(settings.profile)
    if not profile.calibrated and not settings.allow_uncalibrated:
        where = settings.profile or "the shipped profile"
        raise ConfigError(
            f"--screen-profile {where}: calibrated is false (hand-set coefficients); calibrate one on GPU results "
            "(autotune calibrate DIR --output NEW.json) and pass --screen-profile NEW.json, or pass --screen-uncalibrated"
        )
    return profile


class Candidate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    params: dict[str, Any]
    config_hash: str
    prediction: Prediction
    predicted_objective: float | None


class ConfigScorer:
    """Predicts one engine config at the space's workload and load; the score is the predicted objective."""

    def __init__(self, space: SearchSpace, workload: Workload, profile: SimulatorProfile) -> None:
        if space.load.concurrency is None:
            raise ConfigError("screening needs load.concurrency in the search space (the simulator runs a closed loop)")
        if workload.kind != "synthetic":
            raise ConfigError(f"screening: workload {workload.name!r} is a dataset; only synthetic workloads can be simulated")
        self.space, self.workload, self.profile = space, workload, profile
        self.concurrency = space.load.concurrency
        self.num_requests = space.load.num_requests or max(DEFAULT_SCREEN_REQUESTS, 4 * self.concurrency)

    def predict(self, engine: EngineConfig) -> Prediction:
        return predict(
            self.profile, engine, self.workload, concurrency=self.concurrency, num_requests=self.num_requests,
            slo=self.space.slo,
        )

    def score(self, prediction: Prediction) -> float | None:
        """Predicted goodput for goodput/slo_rate objectives, else predicted throughput; None when infeasible."""
        if not prediction.feasible:
            return None
        if self.space.objective.kind in ("goodput", "slo_rate") and prediction.goodput_rps is not None:
            return prediction.goodput_rps
        return prediction.throughput_rps


class Screener:
    def __init__(self, space: SearchSpace, settings: ScreenSettings, workload: Workload) -> None:
        self.space = space
        self.settings = settings
        self.scorer = ConfigScorer(space, workload, load_screen_profile(settings))

    def candidates(self, study: optuna.Study) -> list[Candidate]:
        """K configs from the sampler, drawn in an in-memory copy of the study (they never become trials)."""
        finished = study.get_trials(deepcopy=True, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
        seen = {t.user_attrs.get(attrs.CONFIG_HASH) for t in finished}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scratch = optuna.create_study(directions=self.space.objective.directions(), sampler=make_sampler(self.space))
            scratch.add_trials(finished)
        found: list[Candidate] = []
        for _ in range(self.settings.candidates):
            trial = scratch.ask()
            try:
                engine = self.space.suggest(trial)
            except InvalidTrialConfig as exc:
                log.info("screen: candidate %s invalid (%s)", trial.params, exc)
                scratch.tell(trial, state=TrialState.PRUNED)
                continue
            digest = config_hash(engine)
            if digest in seen:
                scratch.tell(trial, state=TrialState.PRUNED)
                continue
            seen.add(digest)
            prediction = self.scorer.predict(engine)
            found.append(Candidate(params=dict(trial.params), config_hash=digest, prediction=prediction,
                                   predicted_objective=self.scorer.score(prediction)))
            # left RUNNING: TPE's constant liar steers the next draws away from this one
        return found

    def enqueue_next(self, study: optuna.Study) -> Candidate | None:
        """Enqueue the best predicted of K candidates, unless a trial is already queued. None: nothing enqueued."""
        if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            return None
        found = self.candidates(study)
        scored = [c for c in found if c.predicted_objective is not None]
        if not scored:
            log.warning("screen: none of %d candidate(s) is predicted feasible; the sampler picks the next trial", len(found))
            return None
        best = max(scored, key=lambda c: c.predicted_objective or 0.0)
        skipped = [c for c in found if c is not best]
        for other in skipped:
            log.info("screen: not served %s (predicted objective %s, %s)", other.params, other.predicted_objective, PREDICTION_NOTE)
        prediction = best.prediction
        study.enqueue_trial(
            best.params,
            user_attrs={
                SCREENED_FROM: self.settings.candidates,
                PREDICTED_THROUGHPUT: prediction.throughput_rps,
                PREDICTED_OBJECTIVE: best.predicted_objective,
                PREDICTED_TTFT: prediction.ttft_ms_p50,
                PREDICTION_PROFILE: self.scorer.profile.name,
                SCREEN_SKIPPED: [
                    {"params": c.params, PREDICTED_OBJECTIVE: c.predicted_objective, "reason": c.prediction.reason}
                    for c in skipped
                ],
            },
        )
        log.info("screen: enqueued %s, predicted objective %.2f (best of %d; %s)",
                 best.params, best.predicted_objective, len(found), PREDICTION_NOTE)
        return best


def optimize_screened(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], Any],
    screener: Screener,
    *,
    n_trials: int,
    timeout_s: float | None,
    catch: tuple[type[Exception], ...],
    callbacks: list[Callable[[optuna.Study, FrozenTrial], None]] | None,
) -> None:
    """`study.optimize` one trial at a time, each preceded by screening (timeout between trials, as Optuna)."""
    started = time.monotonic()
    for _ in range(n_trials):
        left = None if timeout_s is None else timeout_s - (time.monotonic() - started)
        if left is not None and left <= 0:
            break
        screener.enqueue_next(study)
        study.optimize(objective, n_trials=1, timeout=left, catch=catch, callbacks=callbacks)


# -- looking back -------------------------------------------------------------------------------------


class PredictedTrial(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    number: int
    measured: float
    predicted: float | None = Field(description="Simulator prediction of the objective (None: predicted infeasible)")


class ScreeningSavings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    note: str = (
        "retrospective: the measured configs re-ordered by predicted objective; a screened study would also "
        "have predicted configs that were never measured"
    )
    profile: str
    profile_calibrated: bool
    within_pct: float
    measured_trials: int
    best_trial: int
    best_value: float
    trials_to_reach_measured_order: int = Field(description="GPU trials until one within within_pct of the best, as run")
    trials_to_reach_predicted_order: int = Field(description="The same, trials taken best predicted first")
    trials_avoided: int = Field(description="measured order minus predicted order (negative: screening would cost)")
    rank_correlation: float | None = Field(description="Spearman, predicted vs measured objective")
    trials: list[PredictedTrial]


def screening_savings(
    study: optuna.Study, space: SearchSpace, profile: SimulatorProfile, *, within_pct: float = 5.0, workload: Workload | None = None
) -> ScreeningSavings:
    """Over a finished study's measured trials (first objective, maximized): what screening would have saved."""
    scorer = ConfigScorer(space, workload or resolve_workload(space.workload), profile)
    measured: list[tuple[FrozenTrial, float]] = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if trial.values is None or trial.user_attrs.get(attrs.DUPLICATE_OF) is not None:
            continue
        if attrs.ENGINE_CONFIG not in trial.user_attrs:
            continue
        measured.append((trial, float(trial.values[0])))
    if not measured:
        raise ConfigError(f"study {study.study_name!r}: no measured (COMPLETE) trial with an engine config")
    rows = [
        PredictedTrial(
            number=t.number, measured=value,
            predicted=scorer.score(scorer.predict(EngineConfig.model_validate(t.user_attrs[attrs.ENGINE_CONFIG]))),
        )
        for t, value in measured
    ]
    best = max(rows, key=lambda r: r.measured)
    target = best.measured * (1 - within_pct / 100)
    in_order = sorted(rows, key=lambda r: r.number)
    by_prediction = sorted(rows, key=lambda r: (-(r.predicted if r.predicted is not None else -math.inf), r.number))
    return ScreeningSavings(
        profile=profile.name,
        profile_calibrated=profile.calibrated,
        within_pct=within_pct,
        measured_trials=len(rows),
        best_trial=best.number,
        best_value=best.measured,
        trials_to_reach_measured_order=_trials_to_reach(in_order, target),
        trials_to_reach_predicted_order=_trials_to_reach(by_prediction, target),
        trials_avoided=_trials_to_reach(in_order, target) - _trials_to_reach(by_prediction, target),
        rank_correlation=_spearman(rows),
        trials=rows,
    )


def _trials_to_reach(order: Sequence[PredictedTrial], target: float) -> int:
    return next(i for i, row in enumerate(order, start=1) if row.measured >= target)


def _spearman(rows: Sequence[PredictedTrial]) -> float | None:
    pairs = [(r.measured, r.predicted) for r in rows if r.predicted is not None]
    if len(pairs) < 3:
        return None
    import pandas as pd

    frame = pd.DataFrame(pairs, columns=["measured", "predicted"])
    value = frame["measured"].rank().corr(frame["predicted"].rank())
    return None if value is None or math.isnan(value) else float(value)
