"""The experiments folder runs out of space in the middle of a trial (simulated engine, default SQLite storage).

Where the test may mount (root with CAP_SYS_ADMIN), the folder is a 32 MiB tmpfs and a filler file takes all of
its space while a trial's benchmark runs: every write there fails with ENOSPC, SQLite's included. Where it may
not (a container without that capability), the fallback sets RLIMIT_FSIZE on the running tuner at its SQLite
file's size: no file of that process may grow past it (short writes and EFBIG, as SQLite meets on a full disk),
which is a per-process file size limit, not a full file system; the record says which ran.
AUTOTUNE_DISK_FULL_MODE=rlimit forces the fallback.

Checked: the study stops with one `error:` line naming the study folder (exit 2, no traceback); the SQLite
storage passes `PRAGMA integrity_check`; every trial finished before is unchanged; the trial's server is gone;
once the space is back a plain resume completes the budget with no trial left RUNNING.
"""

from __future__ import annotations

import contextlib
import os
import resource
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import psutil
import pytest
from optuna.trial import FrozenTrial, TrialState
from reliability.reliability_record import Outcome, current_test, record_outcome
from reliability_study import cli, completed_requests, group_alive, force_kill, load_trials, start_cli, wait_for, write_space

from autotune.tune import attrs
from autotune.tune.storage import make_storage
from autotune.tune.budget import counted_trials

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

STUDY = "disk-full"
BUDGET = 4
TMPFS_MIB = 32
MIN_FREE_GIB = "0.01"  # AUTOTUNE_MIN_FREE_GIB for the tuner: 10 MiB, below the tmpfs's size
MODE_ENV = "AUTOTUNE_DISK_FULL_MODE"


@contextlib.contextmanager
def _tmpfs(path: Path) -> Iterator[bool]:
    """Mount a small tmpfs at `path` when allowed; yields whether it did."""
    path.mkdir(parents=True)
    if os.environ.get(MODE_ENV) == "rlimit":
        yield False
        return
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MIB}m", "tmpfs", str(path)], check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        yield False  # no mount here: the RLIMIT_FSIZE fallback
        return
    try:
        yield True
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True, timeout=30, check=False).returncode:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30, check=False)


def _fill(folder: Path) -> Path:
    """Write zeros until the file system refuses (ENOSPC)."""
    filler = folder / "filler"
    chunk = b"\0" * 2**20
    with contextlib.suppress(OSError), filler.open("wb") as handle:
        while True:
            handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
    return filler


def _measuring(study_dir: Path, pid: int) -> FrozenTrial | None:
    """A trial of this tuner whose benchmark is under way, once an earlier trial has finished."""
    trials = load_trials(study_dir, STUDY) or []
    if not any(t.state.is_finished() for t in trials):
        return None
    for trial in trials:
        if trial.state is TrialState.RUNNING and trial.user_attrs.get(attrs.WORKER_PID) == pid and attrs.SERVER_URL in trial.user_attrs:
            if completed_requests(trial.user_attrs[attrs.SERVER_URL]) >= 2:
                return trial
    return None


def test_disk_full_mid_study_stops_cleanly_and_resume_completes(tmp_path: Path) -> None:
    space = write_space(
        tmp_path / "space.yaml",
        parameters={"max_num_seqs": {"type": "int", "low": 2, "high": 64, "log": True}},
        load={"num_requests": 24},
        budget={"n_trials": BUDGET},
        trial={"stop_timeout_s": 2, "warmup_requests": 1},
    )
    experiments = tmp_path / "experiments"
    study_dir = experiments / STUDY
    env = {"AUTOTUNE_MIN_FREE_GIB": MIN_FREE_GIB}
    args = ["tune", str(space), "--study", STUDY, "--experiments-dir", str(experiments), "--no-mlflow"]
    with _tmpfs(experiments) as mounted:
        tuner = start_cli(args, tmp_path / "tune.log", env=env)
        try:
            victim = wait_for(lambda: _measuring(study_dir, tuner.pid), timeout_s=120, what="a trial's benchmark under way")
            before = load_trials(study_dir, STUDY) or []
            finished_before = {t.number: (t.state, t.values) for t in before if t.state.is_finished()}
            filled_at = time.monotonic()
            if mounted:
                filler: Path | None = _fill(experiments)
            else:
                filler = None
                limit = (study_dir / "optuna.db").stat().st_size + 100  # growing the database is the first write to fail
                psutil.Process(tuner.pid).rlimit(resource.RLIMIT_FSIZE, (limit, limit))
            tuner.wait(timeout=120)
            stopped_s = time.monotonic() - filled_at
        finally:
            if tuner.poll() is None:
                tuner.kill()
                tuner.wait()
        log = (tmp_path / "tune.log").read_text(errors="replace")
        with sqlite3.connect(f"file:{study_dir / 'optuna.db'}?mode=ro", uri=True) as db:
            integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        stopped = load_trials(study_dir, STUDY) or []
        pgid = int(victim.user_attrs[attrs.SERVER_PGID])
        left_behind = group_alive(pgid)
        if left_behind:
            force_kill(pgid)
        if filler is not None:
            filler.unlink()  # the space is back
        resumed = cli(*args, env=env, timeout_s=180)
        trials = load_trials(study_dir, STUDY) or []
        counted = counted_trials(optuna.load_study(study_name=STUDY, storage=make_storage(f"sqlite:///{study_dir / 'optuna.db'}", heartbeat=False)))

    error_lines = [line for line in log.splitlines() if line.startswith("error:")]
    changed_at_stop = [n for n, v in finished_before.items() if (stopped[n].state, stopped[n].values) != v]
    changed = [n for n, v in finished_before.items() if (trials[n].state, trials[n].values) != v]
    unfinished = [t.number for t in trials if not t.state.is_finished()]
    clear = tuner.returncode == 2 and len(error_lines) == 1 and str(study_dir) in error_lines[0] and "Traceback" not in log
    record_outcome(
        Outcome(
            scenario="Experiments folder out of space mid-trial (tmpfs filled, or RLIMIT_FSIZE where mounting is not allowed), then resume",
            category="fault",
            tried=1,
            unit="runs",
            lost=len(changed) + len(changed_at_stop) + len(unfinished) + int(integrity != "ok") + int(not clear)
            + int(left_behind) + int(counted != BUDGET) + int(resumed.returncode not in (0, 1)),
            lost_meaning="a finished trial changed, the SQLite storage damaged, a traceback or no clear message naming the "
            "folder, a server left running, a trial left RUNNING, or the resume not completing the budget",
            expected="one 'error:' line naming the folder ('... is out of space'; under RLIMIT_FSIZE possibly SQLite's "
            "'disk I/O error'), exit 2; storage intact; the resume fails the interrupted trial and completes the budget",
            test=current_test(),
            details={
                "mode": f"tmpfs {TMPFS_MIB} MiB" if mounted else "RLIMIT_FSIZE (no mount allowed)",
                "seconds_from_fill_to_stop": round(stopped_s, 1),
                "finished_before_stop": len(finished_before),
                "integrity_check": integrity,
                "stop_message": error_lines[0][:160] if error_lines else "none",
                "trials_total": len(trials),
                "budget": BUDGET,
            },
        )
    )
    assert tuner.returncode == 2, log[-3000:]
    assert len(error_lines) == 1 and str(study_dir) in error_lines[0], (error_lines, log[-3000:])
    # A full file system says so; under RLIMIT_FSIZE SQLite may only see a failed write ("disk I/O error").
    assert "out of space" in error_lines[0] or (not mounted and "disk I/O error" in error_lines[0]), error_lines
    assert "Traceback" not in log, log[-5000:]
    assert integrity == "ok"
    assert not changed_at_stop and not changed, (changed_at_stop, changed)
    assert not left_behind, f"the trial server group {pgid} was left running"
    assert resumed.returncode in (0, 1), resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "Traceback" not in resumed.stdout + resumed.stderr
    assert not unfinished, unfinished
    assert counted == BUDGET, (counted, BUDGET)
