"""The study storage waits out a PostgreSQL restart, and gives up with one error past its wait (in-process)."""

from __future__ import annotations

import threading
import time

import optuna
import pytest

from autotune.tune.stops import StorageUnavailableError
from autotune.tune.storage import make_storage
from helpers.postgres import PostgresServer


@pytest.mark.timeout(120)
def test_a_call_during_a_restart_waits_and_a_long_outage_gives_up_once() -> None:
    with PostgresServer.running() as database:
        patient = make_storage(database.url, heartbeat=False, retry_s=60)
        study = optuna.create_study(study_name="restart", storage=patient)
        study.enqueue_trial({})
        database.stop("fast")
        restarted_at: list[float] = []

        def start_later() -> None:
            time.sleep(2)  # the outage the call must wait out
            database.start()
            restarted_at.append(time.monotonic())

        thread = threading.Thread(target=start_later)
        started = time.monotonic()
        thread.start()
        trial = study.ask()  # waits for the database (through Optuna's cached storage, as the tuner calls it)
        thread.join()
        assert time.monotonic() - started >= 2 and restarted_at
        assert [t.number for t in study.get_trials(deepcopy=False)] == [0] and trial.number == 0

        impatient = make_storage(database.url, heartbeat=False, retry_s=1)
        database.stop("fast")
        started = time.monotonic()
        with pytest.raises(StorageUnavailableError, match="unreachable for 1 s"):
            impatient.get_all_studies()
        assert 1 <= time.monotonic() - started < 10
        started = time.monotonic()
        with pytest.raises(StorageUnavailableError):  # the worker is stopping: later calls fail at once
            impatient.get_all_studies()
        assert time.monotonic() - started < 0.5
        database.start()  # the fixture stops it cleanly
