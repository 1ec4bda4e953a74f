"""Resume after a dead worker: its RUNNING trial becomes FAIL at once and the server group it left is killed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import psutil
from optuna.trial import TrialState

from autotune.tune import attrs
from autotune.tune.recovery import recover_dead_workers, worker_alive
from autotune.tune.storage import make_storage
from autotune.tune.server_process import process_group_exists



def _dead_process() -> tuple[int, float]:
    child = psutil.Popen([sys.executable, "-c", "pass"])
    started = child.create_time()
    child.wait(timeout=30)
    return child.pid, started


def test_dead_worker_trial_is_failed_and_its_server_group_killed(tmp_path: Path) -> None:
    storage = make_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = optuna.create_study(study_name="s", storage=storage)
    done = study.ask()
    study.tell(done, 1.0)
    dead_pid, dead_started = _dead_process()
    left_server = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True
    )  # stands in for the server a killed tuner left behind
    # A dead tuner's orphans are reaped by init; here we are the parent, so reap it as init would.
    reaper = threading.Thread(target=left_server.wait, daemon=True)
    reaper.start()
    try:
        orphan = study.ask()
        for key, value in {
            attrs.WORKER_HOST: socket.gethostname(),
            attrs.WORKER_PID: dead_pid,
            attrs.WORKER_STARTED_AT: dead_started,
            attrs.SERVER_PGID: left_server.pid,
        }.items():
            orphan.set_user_attr(key, value)
        me = psutil.Process()
        alive = study.ask()  # a trial of a live worker (this process) is left alone
        for key, value in {
            attrs.WORKER_HOST: socket.gethostname(), attrs.WORKER_PID: me.pid, attrs.WORKER_STARTED_AT: me.create_time(),
        }.items():
            alive.set_user_attr(key, value)
        elsewhere = study.ask()  # another host's worker: left to the heartbeat
        elsewhere.set_user_attr(attrs.WORKER_HOST, "another-host")
        elsewhere.set_user_attr(attrs.WORKER_PID, dead_pid)

        assert recover_dead_workers(study) == [orphan.number]

        trials = study.trials
        assert trials[done.number].state is TrialState.COMPLETE and trials[done.number].value == 1.0
        assert trials[orphan.number].state is TrialState.FAIL
        assert trials[orphan.number].user_attrs[attrs.FAIL_REASON].startswith(attrs.WORKER_DIED)
        assert trials[alive.number].state is TrialState.RUNNING
        assert trials[elsewhere.number].state is TrialState.RUNNING
        reaper.join(timeout=15)
        deadline = time.monotonic() + 10
        while process_group_exists(left_server.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not process_group_exists(left_server.pid)
        assert recover_dead_workers(study) == []  # idempotent
    finally:
        if left_server.poll() is None:
            os.killpg(left_server.pid, signal.SIGKILL)
            left_server.wait()


def test_worker_alive_tells_a_recycled_pid() -> None:
    me = psutil.Process()
    assert worker_alive(me.pid, me.create_time())
    assert not worker_alive(me.pid, me.create_time() - 1000)
    pid, started = _dead_process()
    assert not worker_alive(pid, started)


def test_workers_starting_together_on_a_fresh_database_all_get_a_storage(tmp_path: Path) -> None:
    """Several workers create the tables of one new database at once (a race Optuna leaves to its caller)."""
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    errors: list[BaseException] = []

    def open_and_create(index: int) -> None:
        try:
            storage = make_storage(url, heartbeat=False)
            optuna.create_study(study_name="shared", storage=storage, load_if_exists=True)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    workers = [threading.Thread(target=open_and_create, args=(i,)) for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert errors == []
    assert len(optuna.get_all_study_names(storage=url)) == 1
