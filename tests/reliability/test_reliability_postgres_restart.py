"""PostgreSQL stopped for 20 s and started again (same port) while four `autotune tune` workers share a study.

Simulated engine, a throwaway PostgreSQL (tests/helpers/postgres.py). Three workers keep the default storage
wait (AUTOTUNE_STORAGE_RETRY_S, 120 s) and must ride the outage out; the fourth is given 5 s, so it must stop
with one clear message instead. Then one plain resume (no --n-trials) runs the rest of the budget.
Checked: every trial finished before the stop is unchanged; no config is measured (served and recorded) by
two trials; no trial stays RUNNING; no traceback anywhere; no trial server left running; the budget completes.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState
from reliability.reliability_record import Outcome, current_test, record_outcome
from reliability_study import force_kill, group_alive, start_cli, wait_for, worker_logs, workers_reaped, write_space

from autotune.tune import attrs
from autotune.tune.storage import make_storage
from autotune.tune.budget import counted_trials
from helpers.postgres import PostgresServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

OUTAGE_S = 20.0  # the figure: long enough for a heartbeat and several trial ends to hit the outage
WORKERS = 4
TRIALS_EACH = 3  # enough that every worker is still at work when the database stops, on a loaded CI box too
BUDGET = 12  # more than the workers can finish (9 + at most 2 of the stopped one): the resume has trials to run
IMPATIENT_RETRY_S = 5  # the fourth worker's AUTOTUNE_STORAGE_RETRY_S: it gives up during the outage
STUDY = "pg-restart"


def _study(url: str) -> optuna.Study:
    return optuna.load_study(study_name=STUDY, storage=make_storage(url, heartbeat=False, retry_s=0))


def _trials(url: str) -> list[FrozenTrial]:
    try:
        return _study(url).get_trials(deepcopy=False)
    except (KeyError, optuna.exceptions.StorageInternalError):
        return []  # the study is not created yet


def _all_workers_at_work(url: str, workers: list[subprocess.Popen[bytes]]) -> list[FrozenTrial] | None:
    """The trials, once one has finished and every worker, still running, has started a trial."""
    trials = _trials(url)
    started = {t.user_attrs.get(attrs.WORKER_PID) for t in trials}
    finished = [t for t in trials if t.state.is_finished()]
    alive = all(w.poll() is None for w in workers)
    return trials if finished and alive and {w.pid for w in workers} <= started else None


def _tracebacks(log: str) -> int:
    return log.count("Traceback (most recent call last)")


def test_postgres_restarted_mid_study_loses_nothing(tmp_path: Path) -> None:
    space = write_space(
        tmp_path / "space.yaml",
        parameters={"max_num_seqs": {"type": "int", "low": 2, "high": 64, "log": True}},
        load={"num_requests": 8},
        budget={"n_trials": BUDGET},
        trial={"stop_timeout_s": 2, "warmup_requests": 1},
    )
    experiments = tmp_path / "experiments"
    with PostgresServer.running() as database:
        url = database.url
        args = ["tune", str(space), "--study", STUDY, "--storage", url, "--experiments-dir", str(experiments), "--no-mlflow"]
        patient_env = {"AUTOTUNE_STORAGE_RETRY_S": "120"}
        workers = [
            start_cli([*args, "--n-trials", str(TRIALS_EACH)], tmp_path / f"worker{i}.log",
                      env=patient_env if i < WORKERS - 1 else {"AUTOTUNE_STORAGE_RETRY_S": str(IMPATIENT_RETRY_S)})
            for i in range(WORKERS)
        ]
        impatient = workers[-1]
        with workers_reaped(workers):
            before = wait_for(
                lambda: _all_workers_at_work(url, workers), timeout_s=180, what="a finished trial and every worker in a trial",
            )
            finished_before = {t.number: (t.state, t.values) for t in before if t.state.is_finished()}
            running_at_stop = sum(t.state is TrialState.RUNNING for t in before)
            database.stop("fast")
            stopped_at = time.monotonic()
            time.sleep(OUTAGE_S)  # the fault itself: the database stays down this long (not a readiness wait)
            impatient_exited_in_outage = impatient.poll() is not None
            database.start()
            outage_s = time.monotonic() - stopped_at
        logs = worker_logs(tmp_path, WORKERS)
        resume_log = tmp_path / "resume.log"
        resume = start_cli(args, resume_log)  # the plain resume: no --n-trials, the rest of the budget
        resume_rc = resume.wait(timeout=180)
        resumed_output = resume_log.read_text(errors="replace")
        study = _study(url)
        trials = study.get_trials(deepcopy=False)
        counted = counted_trials(study)

    changed = [n for n, (state, values) in finished_before.items() if (trials[n].state, trials[n].values) != (state, values)]
    unfinished = [t.number for t in trials if not t.state.is_finished()]
    measured = Counter(
        t.user_attrs[attrs.CONFIG_HASH] for t in trials
        if t.state is TrialState.COMPLETE and t.user_attrs.get(attrs.DUPLICATE_OF) is None and attrs.SERVER_PID in t.user_attrs
    )
    measured_twice = sorted(h for h, n in measured.items() if n > 1)
    left = [int(t.user_attrs[attrs.SERVER_PGID]) for t in trials if attrs.SERVER_PGID in t.user_attrs]
    alive = [pgid for pgid in left if group_alive(pgid)]
    for pgid in alive:
        force_kill(pgid)
    patient_rcs = [w.returncode for w in workers[:-1]]
    rode_out = [i for i, log in enumerate(logs[:-1]) if "reachable again" in log]
    error_lines = [line for line in logs[-1].splitlines() if line.startswith("error:")]
    worker_died = [t.number for t in trials if str(t.user_attrs.get(attrs.FAIL_REASON, "")).startswith(attrs.WORKER_DIED)]
    unclear = (
        sum(rc not in (0, 1) for rc in patient_rcs)
        + int(impatient.returncode != 2 or len(error_lines) != 1)
        + sum(_tracebacks(log) > 0 for log in [*logs, resumed_output])
    )
    record_outcome(
        Outcome(
            scenario=f"PostgreSQL stopped for {OUTAGE_S:g} s (fast shutdown) and restarted under {WORKERS} tune workers, then a plain resume",
            category="fault",
            tried=running_at_stop,
            unit="trials running at the stop",
            lost=len(changed) + len(unfinished) + len(measured_twice) + len(alive) + unclear + int(counted != BUDGET),
            lost_meaning="a finished trial changed or missing, a config measured twice, a trial left RUNNING, a server left "
            "running, a worker ending with a traceback or without one clear message, or the budget not completed",
            expected=f"workers wait for the database (AUTOTUNE_STORAGE_RETRY_S) and go on; one given {IMPATIENT_RETRY_S} s "
            "stops with one 'storage ... unreachable' line; the resume fails its trial ('worker died') and completes the budget",
            test=current_test(),
            details={
                "outage_s": round(outage_s, 1),
                "finished_before_stop": len(finished_before),
                "workers_rode_out": len(rode_out),
                "workers_stopped_cleanly": int(impatient.returncode == 2 and len(error_lines) == 1),
                "trials_total": len(trials),
                "budget": BUDGET,
                "recovered_worker_died": len(worker_died),
            },
        )
    )
    assert not changed, changed
    assert all(rc in (0, 1) for rc in patient_rcs), (patient_rcs, [log[-2000:] for log in logs[:-1]])  # 1: no feasible best
    assert rode_out == list(range(WORKERS - 1)), [log[-2000:] for log in logs[:-1]]  # each waited out the outage
    assert impatient_exited_in_outage and impatient.returncode == 2, logs[-1][-3000:]
    assert len(error_lines) == 1 and "unreachable for 5 s" in error_lines[0] and "127.0.0.1" in error_lines[0], error_lines
    assert not [i for i, log in enumerate([*logs, resumed_output]) if _tracebacks(log)], [*logs, resumed_output]
    assert resume_rc in (0, 1), resumed_output[-3000:]
    assert not unfinished, unfinished
    assert not measured_twice, measured_twice
    assert not alive, alive
    assert counted == BUDGET, (counted, BUDGET)
