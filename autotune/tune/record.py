"""What a trial records in the study: its result's attributes and metrics, its objective values and constraints,
its outcome and reason, and its MLflow run (logged before Optuna freezes the trial's attributes)."""

from __future__ import annotations

import optuna

from autotune.errors import AutotuneError
from autotune.space import SearchSpace
from autotune.tracking import MlflowTracker
from autotune.tune import attrs
from autotune.tune.metrics import trial_metrics
from autotune.tune.trial_result import TrialOutcome, TrialResult

OPTUNA_STATE = {
    TrialOutcome.COMPLETE: "COMPLETE", TrialOutcome.FAILED: "FAIL", TrialOutcome.REJECTED: "PRUNED",
    TrialOutcome.PRUNED: "PRUNED",
}


class TrialFailed(AutotuneError):
    """A trial whose server or benchmark failed; recorded as FAIL with its reason, the study goes on."""


def objective_values(space: SearchSpace, metrics: dict[str, float | None]) -> list[float]:
    values: list[float] = []
    for name in space.objective.metric_names():
        value = metrics.get(name)
        if value is None:
            raise TrialFailed(f"objective metric {name} was not measured")
        values.append(float(value))
    return values


def constraint_violations(space: SearchSpace, metrics: dict[str, float | None]) -> dict[str, float]:
    return {constraint.key: constraint.violation(metrics) for constraint in space.constraints}


def record_result(trial: optuna.Trial, result: TrialResult) -> dict[str, float | None]:
    """The result's files, timings, pinning, start phases and metrics as the trial's attributes; its metrics returned."""
    trial.set_user_attr(attrs.TRIAL_DIR, result.trial_dir)
    trial.set_user_attr(attrs.TIMINGS, result.timings.model_dump(exclude_none=True))
    trial.set_user_attr(attrs.CPU_PINNING, {"server": result.server_cpus, "client": result.client_cpus})
    trial.set_user_attr(attrs.SIMULATED, result.simulated)
    if result.start_phases is not None:
        trial.set_user_attr(attrs.START_PHASES, result.start_phases.model_dump(mode="json", exclude_none=True))
        if result.start_phases.compile_cache is not None:
            trial.set_user_attr(attrs.COMPILE_CACHE, result.start_phases.compile_cache.value)
    if result.compile_cache_root is not None:
        trial.set_user_attr(attrs.COMPILE_CACHE_ROOT, result.compile_cache_root)
    if result.warm_start is not None:
        trial.set_user_attr(attrs.WARM_START, result.warm_start)
        if result.cold_start_reason:
            trial.set_user_attr(attrs.COLD_START_REASON, result.cold_start_reason)
    if result.result_path:
        trial.set_user_attr(attrs.RESULT_PATH, result.result_path)
    metrics: dict[str, float | None] = {}
    if result.summary is not None:
        metrics = {**trial_metrics(result.summary, result.peak_summary), **result.stack_metrics}
        trial.set_user_attr(attrs.METRICS, {k: v for k, v in metrics.items() if v is not None})
        if result.summary.gpu is not None and result.summary.gpu.gpm_status is not None:
            trial.set_user_attr(attrs.GPM_STATUS, result.summary.gpu.gpm_status)
    return metrics


def finish(
    trial: optuna.Trial, outcome: TrialOutcome, reason: str | None, *, tracker: MlflowTracker | None,
    study_tags: dict[str, str],
) -> None:
    """Last attributes before Optuna records the state; then the MLflow run (attrs are frozen after)."""
    trial.set_user_attr(attrs.OUTCOME, outcome.value)
    if reason is not None:
        key = attrs.FAIL_REASON if outcome is TrialOutcome.FAILED else attrs.PRUNE_REASON
        trial.set_user_attr(key, reason)
    if tracker is None:
        return
    record = attrs.trial_record(
        number=trial.number, state=OPTUNA_STATE[outcome], params=trial.params, user_attrs=trial.user_attrs,
        study_tags=study_tags,
    )
    run_id = tracker.log_trial(record)
    trial.set_user_attr(attrs.MLFLOW_SYNCED, run_id is not None)
    if run_id is not None:
        trial.set_user_attr(attrs.MLFLOW_RUN_ID, run_id)
