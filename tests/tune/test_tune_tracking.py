"""MLflow tracking: parent + nested runs found by tags, logged once, secrets masked, unreachable MLflow tolerated."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import mlflow
import pytest
from helpers.tune import FakeRunner, space_from
from optuna.trial import TrialState

from autotune.tracking import MlflowTracker, TrialRecord, default_tracking_uri
from autotune.tune import attrs
from autotune.redact import redact_mapping, redact_url
from autotune.tune.mlflow_sync import sync_mlflow
from autotune.tune.session import reopen_study
from autotune.tune.settings import TuneSettings
from autotune.tune.study import run_tuning


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_redaction_masks_passwords_and_secret_keys() -> None:
    assert redact_url("postgresql://optuna:pw@db:5432/optuna") == "postgresql://optuna:***@db:5432/optuna"
    assert redact_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    cleaned = redact_mapping({"env.HF_TOKEN": "hf_abc", "api_key": "k", "max_num_seqs": 8, "storage": "mysql://u:p@h/d"})
    assert cleaned == {"env.HF_TOKEN": "***", "api_key": "***", "max_num_seqs": 8, "storage": "mysql://u:***@h/d"}


def test_trial_runs_nest_under_one_parent_and_are_logged_once(tmp_path: Path) -> None:
    uri = default_tracking_uri(tmp_path)
    tracker = MlflowTracker(uri, study="st", artifact_dir=tmp_path / "mlartifacts")
    parent = tracker.start_study(tags={"engine": "simulated", "simulated": "true"}, params={"objective": "goodput"})
    assert parent is not None
    artifact = tmp_path / "result.json"
    artifact.write_text("{}")
    record = TrialRecord(
        number=3, state="COMPLETE", params={"engine.max_num_seqs": 8, "engine.env.HF_TOKEN": "secret"},
        metrics={"throughput_rps": 2.5}, tags={"simulated": "true"}, artifacts=[artifact],
    )
    first = tracker.log_trial(record)
    assert first is not None and tracker.log_trial(record) == first
    again = MlflowTracker(uri, study="st", artifact_dir=tmp_path / "mlartifacts")  # a resumed study
    assert again.start_study(tags={}, params={}) == parent
    assert again.logged_trials() == {3}
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["autotune"], filter_string="tags.`autotune.study` = 'st'")
    assert len(runs) == 2
    trial = runs[runs["tags.autotune.role"] == "trial"].iloc[0]
    assert trial["tags.mlflow.parentRunId"] == parent and trial["metrics.throughput_rps"] == 2.5
    assert trial["params.engine.max_num_seqs"] == "8" and trial["params.engine.env.HF_TOKEN"] == "***"
    assert (tmp_path / "mlartifacts").is_dir()


def test_a_run_left_running_by_a_lost_attempt_is_completed_not_duplicated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow goes away between creating a trial's run and closing it (a server restart): the retry (sync)
    completes that run, with its figures, instead of skipping it or adding a second run."""
    import autotune.tracking as tracking

    uri = default_tracking_uri(tmp_path)
    tracker = MlflowTracker(uri, study="st", artifact_dir=tmp_path / "mlartifacts")
    assert tracker.start_study(tags={}, params={}) is not None
    record = TrialRecord(number=4, state="COMPLETE", params={"engine.max_num_seqs": 8}, metrics={"throughput_rps": 2.5})
    real_log_batch = tracking._log_batch

    def server_gone(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("MLflow went away")

    monkeypatch.setattr(tracking, "_log_batch", server_gone)
    assert tracker.log_trial(record) is None  # the run exists, RUNNING, without its figures
    assert tracker.logged_trials() == set()  # so a sync does not count it as logged
    monkeypatch.setattr(tracking, "_log_batch", real_log_batch)
    completed = tracker.log_trial(record)
    assert completed is not None and tracker.logged_trials() == {4}
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["autotune"], filter_string="tags.`autotune.role` = 'trial'")
    assert list(runs["run_id"]) == [completed]
    assert runs.iloc[0]["status"] == "FINISHED" and runs.iloc[0]["metrics.throughput_rps"] == 2.5


def test_unreachable_mlflow_does_not_stop_the_study_and_sync_fills_in_later(
    tmp_path: Path, quick_space_data: dict[str, Any]
) -> None:
    quick_space_data["parameters"] = {"max_num_seqs": {"type": "categorical", "choices": [2, 8, 16]}}
    space = space_from(quick_space_data)
    down = f"http://127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    settings = TuneSettings(experiments_dir=tmp_path, mlflow_uri=down, n_trials=3)
    outcome = run_tuning(space, settings, runner_factory=FakeRunner)
    assert time.monotonic() - started < 60 and outcome.ran == 3
    study = reopen_study(space.name, experiments_dir=tmp_path, mlflow=False).study
    assert [t.user_attrs[attrs.MLFLOW_SYNCED] for t in study.trials] == [False, False, False]

    synced = sync_mlflow(space.name, experiments_dir=tmp_path)  # the default MLflow store is up
    assert synced == [0, 1, 2]
    assert sync_mlflow(space.name, experiments_dir=tmp_path) == []  # a trial is logged once
    mlflow.set_tracking_uri(default_tracking_uri(tmp_path / space.name))
    runs = mlflow.search_runs(experiment_names=["autotune"], filter_string="tags.`autotune.role` = 'trial'")
    assert sorted(runs["tags.autotune.trial_number"].astype(int)) == [0, 1, 2]
    assert set(runs["tags.simulated"]) == {"true"}
    complete = [t.number for t in study.trials if t.state is TrialState.COMPLETE]
    assert runs.set_index("tags.autotune.trial_number").loc[str(complete[0]), "metrics.throughput_rps"] > 0


def test_sync_without_mlflow_is_a_clear_error(tmp_path: Path, quick_space_data: dict[str, Any]) -> None:
    from autotune.errors import ConfigError

    quick_space_data["parameters"] = {"max_num_seqs": {"type": "categorical", "choices": [2]}}
    space = space_from(quick_space_data)
    run_tuning(space, TuneSettings(experiments_dir=tmp_path, mlflow=False, n_trials=1), runner_factory=FakeRunner)
    with pytest.raises(ConfigError, match="unreachable"):
        sync_mlflow(space.name, experiments_dir=tmp_path, mlflow_uri=f"http://127.0.0.1:{_closed_port()}")
