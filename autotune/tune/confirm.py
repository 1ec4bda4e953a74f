"""Repeated, interleaved measurements of the best config and vLLM's defaults (`autotune tune --confirm N`).

One config measures differently from one server start to the next, by more than a best config may beat the defaults
(experiments/h100-qwen3-vl-4b/README.md, "Measurements the code relies on"). One measurement each cannot tell such a
difference from noise. `--confirm N` queues N more trials of each (the best first, then the defaults, then the other
way round: B D D B ...), marked `config_kind: repeat` and `repeat_of: <trial>`. They are served from scratch like any
trial, by whichever worker is free, so their spread includes start-to-start variation. The best config is then chosen
on its mean (`autotune.tune.best`), and `confirmation()` says whether best and defaults are apart: every measurement
of the best above every measurement of the defaults.
"""

from __future__ import annotations

import logging
from collections import Counter

import optuna
from optuna.trial import FrozenTrial, TrialState
from pydantic import BaseModel, ConfigDict

from autotune.space import SearchSpace
from autotune.tune import attrs
from autotune.tune.best import baseline_trial, feasible_trials, mean_value, measurements_by_config

log = logging.getLogger(__name__)


class ConfigMeasurements(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trial: int  # the config's first trial
    trials: list[int]
    values: list[float]
    mean: float
    low: float
    high: float


class Confirmation(BaseModel):
    """The best config other than the defaults vs the defaults, over all their measurements; `apart`: the best's
    lowest measurement above the defaults' highest."""

    model_config = ConfigDict(extra="forbid")

    metric: str
    best: ConfigMeasurements
    defaults: ConfigMeasurements
    ratio_of_means: float
    apart: bool
    verdict: str


def confirmation_targets(study: optuna.Study, space: SearchSpace) -> list[FrozenTrial]:
    """The best config other than the defaults (its first trial, by mean over its measurements) and the defaults
    trial; fewer when either is missing."""
    defaults = baseline_trial(study)
    skip = defaults.user_attrs.get(attrs.CONFIG_HASH) if defaults is not None else None
    groups = {h: ts for h, ts in measurements_by_config(feasible_trials(study)).items() if h != skip}
    challenger = max(groups.values(), key=lambda ts: (mean_value(ts), -ts[0].number))[0] if groups else None
    return [t for t in (challenger, defaults) if t is not None]


def enqueue_repeats(study: optuna.Study, space: SearchSpace, repeats: int) -> list[int]:
    """Queue repeats until the best and the defaults have `repeats` each (queued, running or done); interleaved.

    Returns the numbers of the trials repeated, in queue order. Repeats lost to the environment (a dead worker,
    a busy GPU) do not count, so they are queued again.
    """
    if repeats <= 0 or space.objective.kind == "pareto":
        return []
    targets = confirmation_targets(study, space)
    have: Counter[int] = Counter()
    for trial in study.get_trials(deepcopy=False):
        of = trial.user_attrs.get(attrs.REPEAT_OF)
        lost = trial.state is TrialState.FAIL and attrs.environmental_failure(trial.user_attrs.get(attrs.FAIL_REASON))
        if of is not None and not lost:
            have[int(of)] += 1
    queued: list[int] = []
    for round_ in range(repeats):
        for original in targets if round_ % 2 == 0 else list(reversed(targets)):
            if have[original.number] > round_:
                continue
            user_attrs = {attrs.CONFIG_KIND: attrs.REPEAT, attrs.REPEAT_OF: original.number}
            if attrs.GUIDED_OVERRIDES in original.user_attrs:
                user_attrs[attrs.GUIDED_OVERRIDES] = original.user_attrs[attrs.GUIDED_OVERRIDES]
            study.enqueue_trial(dict(original.params), user_attrs=user_attrs, skip_if_exists=False)
            have[original.number] += 1
            queued.append(original.number)
    if queued:
        log.info("queued repeats of trials %s (interleaved) to tell best from defaults apart from noise", queued)
    return queued


def confirmation(study: optuna.Study, space: SearchSpace) -> Confirmation | None:
    """Best vs defaults over their measurements; None without both, or when either was measured once only."""
    if space.objective.kind == "pareto":
        return None
    targets = confirmation_targets(study, space)
    if len(targets) != 2:
        return None
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values is not None]
    groups = measurements_by_config(complete)
    best, defaults = (_measurements(groups[str(t.user_attrs.get(attrs.CONFIG_HASH))]) for t in targets)
    if len(best.values) < 2 or len(defaults.values) < 2:
        return None
    apart = best.low > defaults.high
    ratio = best.mean / defaults.mean if defaults.mean else float("inf")
    if apart:
        verdict = f"best above defaults in every measurement ({best.low:.2f} > {defaults.high:.2f}): {ratio:.2f}x on the means"
    elif defaults.low > best.high:
        verdict = f"defaults above the best in every measurement ({defaults.low:.2f} > {best.high:.2f}): serve the defaults"
    else:
        verdict = (
            f"ranges overlap (best {best.low:.2f}-{best.high:.2f}, defaults {defaults.low:.2f}-{defaults.high:.2f}): "
            f"the {ratio:.2f}x of the means is not told apart from run-to-run noise"
        )
    return Confirmation(
        metric=space.objective.metric_names()[0], best=best, defaults=defaults, ratio_of_means=ratio, apart=apart,
        verdict=verdict,
    )


def _measurements(trials: list[FrozenTrial]) -> ConfigMeasurements:
    values = [float(t.values[0]) for t in trials]
    return ConfigMeasurements(
        trial=trials[0].number, trials=[t.number for t in trials], values=values, mean=mean_value(trials),
        low=min(values), high=max(values),
    )
