"""The study's MLflow runs kept in step with its Optuna storage: the parent run's params, trials MLflow lacks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from autotune.errors import ConfigError
from autotune.space import SearchSpace
from autotune.tracking import flatten
from autotune.tune import attrs
from autotune.tune.finalize import finalize
from autotune.tune.session import StudySession, reopen_study


def study_params(space: SearchSpace) -> dict[str, Any]:
    data = space.model_dump(mode="json", exclude={"parameters", "description"})
    params = flatten(data)
    params["parameters"] = ", ".join(space.parameters)
    return params


def sync_missing(session: StudySession) -> list[int]:
    """Log to MLflow every finished trial it lacks (idempotent: MLflow is asked which exist).

    Several workers: a trial's own worker logs it before Optuna records its state, so the finished trials are
    read BEFORE MLflow is asked (the other order let a trial finished in between be logged a second time);
    trials whose worker recorded `mlflow_synced` are skipped; MLflow is asked again right before each log.
    """
    tracker = session.tracker
    if tracker is None:
        return []
    finished = session.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
    missing = [t for t in finished if t.user_attrs.get(attrs.MLFLOW_SYNCED) is not True]
    if not missing:
        return []
    logged = tracker.logged_trials()
    if logged is None:
        return []
    synced: list[int] = []
    tags = session.study_tags()
    for trial in missing:
        if trial.number in logged:
            continue
        logged = tracker.logged_trials() or logged  # another worker syncing at the same time
        if trial.number in logged:
            continue
        record = attrs.trial_record(
            number=trial.number, state=trial.state.name, params=trial.params, user_attrs=trial.user_attrs, study_tags=tags
        )
        if tracker.log_trial(record) is not None:
            synced.append(trial.number)
    return synced


def sync_mlflow(name: str, *, experiments_dir: Path, storage: str | None = None, mlflow_uri: str | None = None) -> list[int]:
    """`autotune sync-mlflow`: log the trials MLflow lacks, then the study's files on the parent run."""
    session = reopen_study(name, experiments_dir=experiments_dir, storage=storage, mlflow_uri=mlflow_uri)
    assert session.tracker is not None
    if session.tracker.start_study(tags=session.study_tags(), params=study_params(session.space)) is None:
        raise ConfigError(f"MLflow at {session.tracker.shown_uri} is unreachable: nothing synced")
    synced = sync_missing(session)
    finalize(session)
    return synced
