"""A trial creation whose commit reached the database but whose answer was lost is not done twice (in-process).

Seen under PostgreSQL restarted mid-study (tests/reliability/test_reliability_postgres_restart.py): the retried
creation made a second trial and the first stayed RUNNING for good, known to no worker and without a heartbeat."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy.exc
from optuna.storages._rdb import models
from optuna.storages._rdb import storage as rdb_storage
from optuna.trial import TrialState
from sqlalchemy import event
from sqlalchemy.orm import Session

import autotune.tune.storage
from autotune.tune import attrs
from autotune.tune.recovery import recover_dead_workers
from autotune.tune.storage import CREATION_TOKEN, make_storage


@pytest.fixture
def answer_lost_once(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The first session that inserts a trial commits, then raises as if the connection closed before the answer
    came back (SQLite's retried error stands in for PostgreSQL's 'server closed the connection unexpectedly').
    Yields the numbers of the trials inserted."""
    inserted: list[int] = []
    original = rdb_storage._create_scoped_session

    def note_trial_inserts(session: Session, _context: Any) -> None:
        if any(isinstance(row, models.TrialModel) for row in session.new):
            session.info["trial_inserted"] = True

    @contextmanager
    def answer_lost(scoped_session: Any, ignore_integrity_error: bool = False) -> Iterator[Session]:
        with original(scoped_session, ignore_integrity_error) as session:
            yield session
            trial_inserted = session.info.pop("trial_inserted", False)
            last = session.query(models.TrialModel.number).order_by(models.TrialModel.trial_id.desc()).limit(1).scalar()
        if trial_inserted:  # committed by now
            inserted.append(last)
            if len(inserted) == 1:
                raise sqlalchemy.exc.OperationalError("INSERT INTO trials", {}, Exception("database is locked"))

    event.listen(Session, "after_flush", note_trial_inserts)
    monkeypatch.setattr(rdb_storage, "_create_scoped_session", answer_lost)
    monkeypatch.setattr(autotune.tune.storage, "_create_scoped_session", answer_lost)
    try:
        yield inserted
    finally:
        event.remove(Session, "after_flush", note_trial_inserts)


def _study(tmp_path: Path) -> optuna.Study:
    storage = make_storage(f"sqlite:///{tmp_path / 'optuna.db'}", heartbeat=False, retry_s=30)
    return optuna.create_study(study_name="lost-answer", storage=storage)


def test_an_ask_whose_answer_was_lost_creates_one_trial(tmp_path: Path, answer_lost_once: list[int]) -> None:
    study = _study(tmp_path)
    trial = study.ask()
    assert answer_lost_once == [0]  # the retry found the committed trial instead of creating a second one
    assert [t.number for t in study.get_trials(deepcopy=False)] == [0] and trial.number == 0
    study.tell(trial, 1.0)
    assert study.get_trials(deepcopy=False)[0].state is TrialState.COMPLETE


def test_an_enqueued_trial_whose_answer_was_lost_is_queued_once(tmp_path: Path, answer_lost_once: list[int]) -> None:
    study = _study(tmp_path)
    study.enqueue_trial({"x": 3})
    assert answer_lost_once == [0]
    assert len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,))) == 1
    trial = study.ask()
    assert trial.number == 0 and study.trials[0].system_attrs["fixed_params"] == {"x": 3}
    assert CREATION_TOKEN in study.trials[0].system_attrs


def test_a_trial_whose_worker_died_before_its_objective_ran_is_failed_by_the_next_resume(tmp_path: Path) -> None:
    """Seen in the PostgreSQL restart test: a worker given 5 s for the database gave up right after a creation whose
    answer was lost, before its objective wrote who ran the trial; the trial stayed RUNNING after the resume. A trial
    is now born with its worker's identity, so the resume's recovery sees that worker dead."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(study_name="lost-answer", storage=make_storage(url, heartbeat=False, retry_s=30))
    creator = (
        "import os, optuna\n"
        "from autotune.tune.storage import make_storage\n"
        f"study = optuna.load_study(study_name='lost-answer', storage=make_storage({url!r}, heartbeat=False))\n"
        "study.ask()\n"
        "os._exit(2)\n"  # gone before any objective or tell
    )
    subprocess.run([sys.executable, "-c", creator], check=False, timeout=60)
    study = optuna.load_study(study_name="lost-answer", storage=make_storage(url, heartbeat=False, retry_s=30))
    assert [t.state for t in study.get_trials(deepcopy=False)] == [TrialState.RUNNING]
    assert recover_dead_workers(study) == [0]
    trial = study.get_trials(deepcopy=False)[0]
    assert trial.state is TrialState.FAIL and trial.user_attrs[attrs.FAIL_REASON].startswith(attrs.WORKER_DIED)


def test_a_queued_trial_carries_no_worker_until_one_takes_it(tmp_path: Path) -> None:
    study = _study(tmp_path)
    study.enqueue_trial({"x": 3})
    assert attrs.WORKER_PID not in study.trials[0].user_attrs  # whoever runs it writes its own identity
    assert study.ask().number == 0
