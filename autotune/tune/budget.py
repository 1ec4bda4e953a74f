"""The study's trial budget: which finished trials count against it, how many this run has left, when it is spent."""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState
from pydantic import BaseModel, ConfigDict

from autotune.space import SearchSpace
from autotune.tune import attrs
from autotune.tune.best import feasible_trials

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


class RunPlan(BaseModel):
    """How many trials this run will start, and why none when the budget is spent."""

    model_config = ConfigDict(extra="forbid")

    n_trials: int
    spent: str | None = None


def config_was_at_fault(trial: FrozenTrial) -> bool:
    return not attrs.environmental_failure(trial.user_attrs.get(attrs.FAIL_REASON))


def counted_trials(study: optuna.Study) -> int:
    """Finished trials that count against the budget (those lost to a dead worker or Ctrl-C do not)."""
    finished = study.get_trials(deepcopy=False, states=FINISHED)
    return sum(1 for t in finished if t.state is not TrialState.FAIL or config_was_at_fault(t))


def spent_budget_message(study: optuna.Study, space: SearchSpace) -> str | None:
    """When the budget has no trial left: what it was spent on and how to go on (None while trials are left)."""
    counted = counted_trials(study)
    if counted < space.budget.n_trials:
        return None
    states = [t.state for t in study.get_trials(deepcopy=False, states=FINISHED)]
    spent = ", ".join(f"{states.count(s)} {s.name.lower()}" for s in (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED) if s in states)
    feasible = len(feasible_trials(study))
    on = "no trial feasible: the budget went on failures" if feasible == 0 else f"{feasible} feasible"
    return (
        f"study {study.study_name!r}: its budget of {space.budget.n_trials} trials is spent ({spent}; {on}), "
        f"so no trial runs. See why with `autotune trials {study.study_name}`; run more with --n-trials N"
    )


def finished_count(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def plan_run(study: optuna.Study, space: SearchSpace, n_trials: int | None) -> RunPlan:
    """`--n-trials` counts trials of this run; without it the run goes on until the study holds `budget.n_trials`
    counted trials (so a resume finishes the budget)."""
    if n_trials is not None:
        return RunPlan(n_trials=n_trials)
    return RunPlan(
        n_trials=max(0, space.budget.n_trials - counted_trials(study)), spent=spent_budget_message(study, space)
    )
