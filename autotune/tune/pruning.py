"""Optuna pruners for screened trials (autotune.tune.fidelity says how trials are screened).

`make_pruner` gives the space's pruner: Optuna's PercentilePruner, or `BestFractionPruner`, an Optuna pruner that
keeps a trial whose screening value reaches a fraction of the best screening value among the trials measured in full.
`prune_reason` says which reference a pruned trial missed.
"""

from __future__ import annotations

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from autotune.space import PrunerSettings
from autotune.tune.fidelity import SCREENING_STEP


def make_pruner(settings: PrunerSettings) -> optuna.pruners.BasePruner:
    if settings.kind == "percentile":
        return optuna.pruners.PercentilePruner(
            settings.percentile, n_startup_trials=settings.min_trials, n_warmup_steps=0, n_min_trials=settings.min_trials
        )
    return BestFractionPruner(settings.fraction, min_trials=settings.min_trials)


def _references(study: optuna.Study) -> list[float]:
    """The screening values of the trials measured in full."""
    return [
        t.intermediate_values[SCREENING_STEP]
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if SCREENING_STEP in t.intermediate_values
    ]


def _maximize(study: optuna.Study) -> bool:
    return study.direction == StudyDirection.MAXIMIZE


class BestFractionPruner(optuna.pruners.BasePruner):
    """Prune a trial whose screening value cannot reach `fraction` of the best screening value measured in full."""

    def __init__(self, fraction: float, *, min_trials: int = 2) -> None:
        self.fraction = fraction
        self.min_trials = min_trials

    def threshold(self, study: optuna.Study) -> float | None:
        """The screening value a trial must reach (None: too few trials measured in full to judge)."""
        references = _references(study)
        if len(references) < self.min_trials:
            return None
        if _maximize(study):
            return self.fraction * max(references)
        return min(references) / self.fraction

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        value = trial.intermediate_values.get(SCREENING_STEP)
        limit = self.threshold(study)
        if value is None or limit is None:
            return False
        return value < limit if _maximize(study) else value > limit


def prune_reason(study: optuna.Study, settings: PrunerSettings, metric: str, value: float) -> str:
    """Why a screened trial was pruned, with the reference it missed."""
    references = _references(study)
    maximize = _maximize(study)
    if not references:
        return f"pruned after screening: {metric} {value:.4g}"
    if settings.kind == "percentile":
        level = 100 - settings.percentile if maximize else settings.percentile
        limit = float(np.nanpercentile(np.asarray(references, dtype=float), level)) if references else float("nan")
        rule = f"the best {settings.percentile:g}% of the {len(references)} screened trials measured in full ({limit:.4g})"
    else:
        best = max(references) if maximize else min(references)
        limit = settings.fraction * best if maximize else best / settings.fraction
        rule = f"{settings.fraction:g} x the best screening value of the trials measured in full ({best:.4g}): {limit:.4g}"
    side = "below" if maximize else "above"
    return f"pruned after screening: {metric} {value:.4g} is {side} {rule}"
