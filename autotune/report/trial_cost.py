"""What a study's trials cost in wall time (issue 17's record, `experiments/trial-cost/summary.json`).

From the study's Optuna store (`optuna.db`, or a recorded `optuna.db.xz`, read from a scratch copy): the study's wall
time from the first trial's start to the last trial's end, the median trial, and the median of each start phase and
trial part (the phases as each trial parsed them from its own server log, `autotune.tune.start_phases`), with how
many starts were warm (`--warm-start`) and how many the compile cache served. Every finished trial counts, failed and
pruned ones too: they cost the lease the same; so does one interrupted by Ctrl-C or SIGTERM (a lease's end), with
what it recorded until then; a duplicate (its value reused) or a config rejected before serving
(no server started) does not.
"""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path

from optuna.trial import FrozenTrial, TrialState
from pydantic import Field

from autotune.base_models import StrictModel
from autotune.errors import ConfigError
from autotune.report import recorded
from autotune.tune import attrs
from autotune.tune.start_phases import PHASES

TRIAL_PARTS = ("startup_s", "warmup_s", "screening_s", "measure_s", "stop_s")


class TrialCostSummary(StrictModel):
    study: str
    simulated: bool = Field(description="True: the simulated engine (not GPU figures)")
    gpus: int
    trials: int = Field(description="Finished trials that served a config (duplicates left out)")
    states: dict[str, int]
    study_wall_s: float = Field(description="The first trial's start to the last trial's end")
    median_trial_s: float
    median_start_phases_s: dict[str, float | None] = Field(description="Per phase: the median over the trials that have it")
    median_trial_parts_s: dict[str, float | None]
    warm_starts: int
    compile_cache: dict[str, int] = Field(description="hit / miss / partial / disabled: trials per kind")


def summarize_trial_cost(study_dir: Path, *, gpus: int) -> TrialCostSummary:
    """The trial cost of the study recorded in `study_dir` (only read)."""
    with recorded.study(study_dir) as session:
        trials = [t for t in session.study.get_trials(deepcopy=False) if _served(t)]
    if not trials:
        raise ConfigError(f"{study_dir}: no finished trial that served a config (nothing to summarize yet)")
    starts = [t.datetime_start for t in trials if t.datetime_start is not None]
    ends = [t.datetime_complete for t in trials if t.datetime_complete is not None]
    phases = [t.user_attrs.get(attrs.START_PHASES) or {} for t in trials]
    timings = [t.user_attrs.get(attrs.TIMINGS) or {} for t in trials]
    return TrialCostSummary(
        study=study_dir.name,
        simulated=any(bool(t.user_attrs.get(attrs.SIMULATED)) for t in trials),
        gpus=gpus,
        trials=len(trials),
        states=dict(Counter(t.state.name for t in trials)),
        study_wall_s=round((max(ends) - min(starts)).total_seconds(), 1),
        median_trial_s=round(statistics.median(float(t.get("total_s", 0.0)) for t in timings), 1),
        median_start_phases_s={name: _median([p.get(name) for p in phases]) for name in (*PHASES, "total_s")},
        median_trial_parts_s={name: _median([t.get(name) for t in timings]) for name in TRIAL_PARTS},
        warm_starts=sum(1 for t in trials if t.user_attrs.get(attrs.WARM_START) is True),
        compile_cache=dict(Counter(str(t.user_attrs[attrs.COMPILE_CACHE]) for t in trials
                                   if t.user_attrs.get(attrs.COMPILE_CACHE))),
    )


def _served(trial: FrozenTrial) -> bool:
    finished = trial.state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
    started = (trial.user_attrs.get(attrs.TIMINGS) or {}).get("startup_s") is not None  # not rejected before serving
    return finished and started and trial.user_attrs.get(attrs.DUPLICATE_OF) is None


def _median(values: list[float | None]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return round(statistics.median(present), 1) if present else None
