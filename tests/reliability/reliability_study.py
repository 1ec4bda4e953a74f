"""Search spaces, `autotune` CLI runs and study inspection for the study-fault tests (simulated engine)."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from autotune.tune import attrs
from autotune.tune.storage import make_storage
from helpers.servers import MODEL_DIR

REPO = Path(__file__).resolve().parents[2]
QUICK_SPACE = REPO / "search_spaces" / "simulated-quick.yaml"


def write_space(path: Path, *, parameters: dict[str, Any] | None = None, **changes: Any) -> Path:
    """search_spaces/simulated-quick.yaml with the model path made absolute and sections replaced.

    `trial`, `load` and `engine_base` changes are merged into the shipped sections; others replace them."""
    data: dict[str, Any] = copy.deepcopy(yaml.safe_load(QUICK_SPACE.read_text()))
    data["engine_base"]["model"] = MODEL_DIR
    if parameters is not None:
        data["parameters"] = parameters
    for key, value in changes.items():
        if key in ("trial", "load", "engine_base") and isinstance(value, Mapping):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def cli(*args: str, timeout_s: float = 180, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autotune.cli", *args],
        capture_output=True, text=True, timeout=timeout_s, check=False, env={**os.environ, **(env or {})},
    )


def start_cli(args: list[str], log_path: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    log = log_path.open("ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "autotune.cli", *args], stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    finally:
        log.close()  # the child holds its own descriptor


@contextmanager
def workers_reaped(workers: list[subprocess.Popen[bytes]], timeout_s: float = 180) -> Iterator[None]:
    """Run the block, then wait for every worker (at most `timeout_s` each); any worker still running when the block
    or the wait fails is killed, so no tuner outlives its test."""
    try:
        yield
        for worker in workers:
            worker.wait(timeout=timeout_s)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()


def worker_logs(folder: Path, count: int) -> list[str]:
    """The output of workers started with logs `folder/worker{i}.log`."""
    return [(folder / f"worker{i}.log").read_text(errors="replace") for i in range(count)]


def load_trials(study_dir: Path, name: str) -> list[FrozenTrial] | None:
    """The study's trials, or None while its storage is not there yet."""
    if not (study_dir / "optuna.db").is_file():
        return None
    try:
        storage = make_storage(f"sqlite:///{study_dir / 'optuna.db'}", heartbeat=False)
        return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    except (KeyError, optuna.exceptions.StorageInternalError, ValueError):
        return None


def wait_for(condition: Callable[[], Any], *, timeout_s: float, what: str, interval_s: float = 0.1) -> Any:
    """Poll until `condition()` is truthy (returned); fail with `what` after the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def completed_requests(server_url: str) -> float:
    """Chat requests the server answered 200 (from its /metrics); -1 when it does not answer."""
    try:
        text = httpx.get(f"{server_url}/metrics", timeout=2, trust_env=False).text
    except httpx.HTTPError:
        return -1
    for line in text.splitlines():
        if line.startswith("autotune_requests_total{") and 'status="200"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0


def running_trial_with_server(
    trials: list[FrozenTrial] | None, *, number: int | None = None, worker_pid: int | None = None
) -> FrozenTrial | None:
    """A RUNNING trial that has started its server and recorded both its group and its URL (optionally: this number,
    run by this worker). The tuner writes them one after the other: a reader must wait for both, not for the first."""
    for trial in trials or []:
        if trial.state is not TrialState.RUNNING or not {attrs.SERVER_PGID, attrs.SERVER_URL} <= trial.user_attrs.keys():
            continue
        if number is not None and trial.number != number:
            continue
        if worker_pid is not None and trial.user_attrs.get(attrs.WORKER_PID) != worker_pid:
            continue
        return trial
    return None


def freeze(pgid: int) -> None:
    """SIGSTOP the whole server group: it neither answers nor exits (a hung process)."""
    os.killpg(pgid, signal.SIGSTOP)


def force_kill(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
