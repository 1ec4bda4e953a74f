"""Resume after a crash: RUNNING trials whose worker (host + pid + start time) is dead become FAIL at once,
and the server process group each left behind is killed."""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from typing import Any

import optuna
import psutil
from optuna.trial import TrialState

from autotune.tune import attrs
from autotune.tune.server_process import kill_process_group

log = logging.getLogger(__name__)


def worker_identity() -> dict[str, Any]:
    """This process as a trial's worker: what `recover_dead_workers` checks (host, pid, start time)."""
    me = psutil.Process()
    return {attrs.WORKER_HOST: socket.gethostname(), attrs.WORKER_PID: me.pid, attrs.WORKER_STARTED_AT: me.create_time()}


def worker_alive(pid: int, started_at: float | None) -> bool:
    """The process still runs and is the same one (a recycled pid has another start time)."""
    try:
        process = psutil.Process(pid)
        if started_at is not None and abs(process.create_time() - float(started_at)) > 1.0:
            return False
        return process.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def kill_left_server(user_attrs: Mapping[str, Any]) -> bool:
    """Kill the server process group a trial recorded, when it was started on this host. True if killed."""
    pgid = user_attrs.get(attrs.SERVER_PGID)
    if pgid is None or user_attrs.get(attrs.WORKER_HOST) != socket.gethostname():
        return False
    killed = kill_process_group(int(pgid))
    if killed:
        log.warning("killed server process group %s left by trial", pgid)
    return killed


def recover_dead_workers(study: optuna.Study) -> list[int]:
    """Mark FAIL ('worker died') every RUNNING trial whose worker on this host is gone; returns their numbers."""
    me = socket.gethostname()
    recovered: list[int] = []
    storage = study._storage  # user attributes of another process's trial: no public API but the storage
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        user = trial.user_attrs
        if user.get(attrs.WORKER_HOST) != me or user.get(attrs.WORKER_PID) is None:
            continue  # another host's worker: its heartbeat decides
        if worker_alive(int(user[attrs.WORKER_PID]), user.get(attrs.WORKER_STARTED_AT)):
            continue
        kill_left_server(user)
        reason = f"{attrs.WORKER_DIED} (pid {user[attrs.WORKER_PID]} on {me}) during the trial"
        try:
            storage.set_trial_user_attr(trial._trial_id, attrs.FAIL_REASON, reason)
            storage.set_trial_user_attr(trial._trial_id, attrs.OUTCOME, "failed")
            storage.set_trial_user_attr(trial._trial_id, attrs.MLFLOW_SYNCED, False)
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first
        log.warning("trial %d: %s; marked FAIL", trial.number, reason)
        recovered.append(trial.number)
    return recovered
