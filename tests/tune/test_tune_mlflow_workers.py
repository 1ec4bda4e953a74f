"""Several worker processes logging the same trial (or opening the same study) make one MLflow run."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import mlflow
import pytest

from autotune.tracking import MlflowTracker, TrialRecord, default_tracking_uri

pytestmark = pytest.mark.timeout(120)
WORKERS = 3
TRIALS = (0, 4)


def _worker(uri: str, barrier: multiprocessing.synchronize.Barrier, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    tracker = MlflowTracker(uri, study="race")
    tracker._connect()  # connection set up before the race, so all processes create runs at once
    barrier.wait(timeout=60)
    ids = [tracker.start_study(tags={}, params={})]
    for number in TRIALS:
        barrier.wait(timeout=60)
        ids.append(tracker.log_trial(TrialRecord(number=number, state="COMPLETE", metrics={"throughput_rps": 1.0})))
    queue.put(ids)


def test_concurrent_workers_log_each_trial_once(tmp_path: Path) -> None:
    uri = default_tracking_uri(tmp_path)
    MlflowTracker(uri, study="setup").start_study(tags={}, params={})  # the experiment and schema exist
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WORKERS)
    queue = context.Queue()
    processes = [context.Process(target=_worker, args=(uri, barrier, queue)) for _ in range(WORKERS)]
    for process in processes:
        process.start()
    returned = [queue.get(timeout=100) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["autotune"], filter_string="tags.`autotune.study` = 'race'")
    trial_runs = runs[runs["tags.autotune.role"] == "trial"]
    parents = runs[runs["tags.autotune.role"] == "study"]
    assert len(parents) == 1
    assert sorted(trial_runs["tags.autotune.trial_number"].astype(int)) == list(TRIALS)
    assert set(trial_runs["status"]) == {"FINISHED"}
    assert set(trial_runs["tags.mlflow.parentRunId"]) == {parents["run_id"].iloc[0]}
    # every worker was told the run that was kept
    assert all(ids == returned[0] for ids in returned), returned
    assert returned[0][0] == parents["run_id"].iloc[0]


def _connect_fresh(uri: str, barrier: multiprocessing.synchronize.Barrier, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    barrier.wait(timeout=60)
    queue.put(MlflowTracker(uri, study="fresh")._connect() is not None)


def test_workers_creating_a_new_store_at_once_all_connect(tmp_path: Path) -> None:
    # Two workers starting a new study create the SQLite store together; MLflow's schema migration must not
    # leave one of them "unreachable" (it would then log none of its trials).
    uri = default_tracking_uri(tmp_path)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WORKERS)
    queue = context.Queue()
    processes = [context.Process(target=_connect_fresh, args=(uri, barrier, queue)) for _ in range(WORKERS)]
    for process in processes:
        process.start()
    connected = [queue.get(timeout=100) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    assert connected == [True] * WORKERS
