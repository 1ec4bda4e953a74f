"""Faults in a study run by the real `autotune tune` on the simulated engine (processes on loopback).

Beyond tests/tune (crash at start, hang at start, crash/stall mid-benchmark through the engine's fault
hook, one SIGKILL mid-trial, unwritable folder, low disk): here the trial server *process* is frozen
(SIGSTOP: it neither answers nor exits) in the middle of a benchmark, the tuner is SIGKILLed several
times (once while its trial server is frozen, so that only the resume can clean it up), and study
folders that cannot be used are refused before any server starts.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState
from reliability.reliability_record import Outcome, current_test, record_outcome
from reliability_study import (
    cli,
    completed_requests,
    force_kill,
    freeze,
    group_alive,
    load_trials,
    running_trial_with_server,
    start_cli,
    wait_for,
    write_space,
)

from autotune.report.trial_cost import summarize_trial_cost
from autotune.tune import attrs

SERVING_PARAMETERS = {"max_num_seqs": {"type": "int", "low": 2, "high": 64, "log": True}}  # every trial serves


def _group_pgids(trials: list) -> set[int]:
    return {int(t.user_attrs[attrs.SERVER_PGID]) for t in trials if attrs.SERVER_PGID in t.user_attrs}


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_frozen_server_mid_benchmark_fails_its_trial_and_the_study_goes_on(tmp_path: Path) -> None:
    space = write_space(
        tmp_path / "space.yaml",
        parameters=SERVING_PARAMETERS,
        load={"num_requests": 24},
        trial={"measure_timeout_s": 10, "stop_timeout_s": 2, "warmup_requests": 2},
    )
    experiments = tmp_path / "experiments"
    study_dir = experiments / "frozen"
    args = ["tune", str(space), "--study", "frozen", "--experiments-dir", str(experiments), "--no-mlflow", "--n-trials", "3"]
    tuner = start_cli(args, tmp_path / "tune.log")
    try:
        victim = wait_for(
            lambda: running_trial_with_server(load_trials(study_dir, "frozen"), number=1, worker_pid=tuner.pid),
            timeout_s=90, what="trial 1 to start its server",
        )
        url = victim.user_attrs[attrs.SERVER_URL]
        wait_for(lambda: completed_requests(url) >= 4, timeout_s=60, what="trial 1's benchmark to be under way")
        frozen_at = time.monotonic()
        freeze(int(victim.user_attrs[attrs.SERVER_PGID]))
        tuner.wait(timeout=120)
        study_s = time.monotonic() - frozen_at
    finally:
        if tuner.poll() is None:
            tuner.kill()
            tuner.wait()
    log = (tmp_path / "tune.log").read_text(errors="replace")
    trials = load_trials(study_dir, "frozen")
    assert trials is not None
    frozen = trials[1]
    pgid = int(victim.user_attrs[attrs.SERVER_PGID])
    left_behind = group_alive(pgid)
    if left_behind:
        force_kill(pgid)
    others = [t for t in trials if t.number != 1]
    record_outcome(
        Outcome(
            scenario="Trial server frozen (SIGSTOP) in the middle of its benchmark",
            category="fault",
            tried=1,
            unit="trials",
            lost=int(left_behind) + sum(t.state is not TrialState.COMPLETE for t in others),
            lost_meaning="a server left running, or another trial of the study not completed",
            expected="that trial FAIL with its reason; its server group killed; the next trial runs",
            test=current_test(),
            details={"fail_reason": str(frozen.user_attrs.get(attrs.FAIL_REASON)), "seconds_to_study_end": round(study_s, 1)},
        )
    )
    assert tuner.returncode == 0, log[-3000:]
    assert frozen.state is TrialState.FAIL
    assert "did not finish within 10 s" in frozen.user_attrs[attrs.FAIL_REASON]
    assert not left_behind, f"the frozen server group {pgid} was left behind"
    assert [t.state for t in others] == [TrialState.COMPLETE, TrialState.COMPLETE]  # the study went on
    assert "Traceback" not in log


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_repeated_sigkill_of_the_tuner_then_resume_loses_nothing(tmp_path: Path) -> None:
    """Kill -9 the tuner at a random moment of a trial, then again while its trial server is frozen (so
    it outlives the tuner: SIGTERM from PR_SET_PDEATHSIG stays pending), resuming after each; the last
    resume runs the study to its budget."""
    budget = 3
    space = write_space(
        tmp_path / "space.yaml",
        parameters=SERVING_PARAMETERS,
        load={"num_requests": 32},
        budget={"n_trials": budget},
        trial={"stop_timeout_s": 2, "warmup_requests": 2},
    )
    experiments = tmp_path / "experiments"
    study_dir = experiments / "killed"
    args = ["tune", str(space), "--study", "killed", "--experiments-dir", str(experiments), "--no-mlflow"]
    rng = random.Random(8)
    finished_before: dict[int, tuple[TrialState, list[float] | None]] = {}
    victims: list[int] = []
    kills = 0
    for freeze_server in (False, True):
        tuner = start_cli(args, tmp_path / "tune.log")
        try:
            victim = wait_for(
                lambda: running_trial_with_server(load_trials(study_dir, "killed"), worker_pid=tuner.pid),
                timeout_s=90, what="a trial of this tuner with a server",
            )
            url = victim.user_attrs[attrs.SERVER_URL]
            wait_for(lambda: completed_requests(url) >= 1, timeout_s=60, what="the trial's server to answer")
            time.sleep(rng.uniform(0.0, 1.5))  # a random moment of warm-up or benchmark
            if freeze_server:
                freeze(int(victim.user_attrs[attrs.SERVER_PGID]))
            trials = load_trials(study_dir, "killed") or []
            finished_before.update({t.number: (t.state, t.values) for t in trials if t.state.is_finished()})
            tuner.send_signal(signal.SIGKILL)
            tuner.wait(timeout=30)
            kills += 1
            trials = load_trials(study_dir, "killed") or []
            victims += [t.number for t in trials if t.state is TrialState.RUNNING and t.number not in victims]
        finally:
            if tuner.poll() is None:
                tuner.kill()
                tuner.wait()
    frozen_pgid = int(victim.user_attrs[attrs.SERVER_PGID])
    assert group_alive(frozen_pgid)  # the frozen server outlived its tuner: only recovery can end it
    resumed = cli(*args, timeout_s=180)
    trials = load_trials(study_dir, "killed")
    assert trials is not None
    lost = [n for n, (state, values) in finished_before.items() if (trials[n].state, trials[n].values) != (state, values)]
    running = [t.number for t in trials if t.state is TrialState.RUNNING]
    alive = [pgid for pgid in _group_pgids(trials) if group_alive(pgid)]
    for pgid in alive:
        force_kill(pgid)
    counted = [t for t in trials if t.state.is_finished() and not str(t.user_attrs.get(attrs.FAIL_REASON, "")).startswith(attrs.WORKER_DIED)]
    record_outcome(
        Outcome(
            scenario="SIGKILL of `autotune tune` mid-trial (once with its server frozen), then resume",
            category="fault",
            tried=kills,
            unit="kills",
            lost=len(lost) + len(running) + len(alive),
            lost_meaning="a finished trial changed or missing, a trial left RUNNING, or a server process group left behind",
            expected="killed trials FAIL ('worker died'), their servers killed, the resume completes the budget",
            test=current_test(),
            details={"finished_before_kills": len(finished_before), "trials_total": len(trials), "budget": budget},
        )
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert not lost, lost
    assert not running, running
    assert not alive, f"server groups left behind: {alive}"
    for number in victims:
        assert trials[number].state is TrialState.FAIL
        assert trials[number].user_attrs[attrs.FAIL_REASON].startswith(attrs.WORKER_DIED)
    assert len(counted) == budget  # killed trials do not count against the budget


@pytest.mark.parametrize("case", ["proc-filesystem", "storage-is-a-folder"])
def test_unusable_experiments_folder_is_refused_before_any_server(tmp_path: Path, case: str) -> None:
    space = write_space(tmp_path / "space.yaml")
    if case == "proc-filesystem":
        experiments = Path("/proc/autotune-experiments")  # no process, root included, may create files there
        expected = "is not writable"
    else:
        experiments = tmp_path / "experiments"
        (experiments / "simulated-quick" / "optuna.db").mkdir(parents=True)
        expected = "storage sqlite:///"
    done = cli("tune", str(space), "--experiments-dir", str(experiments), "--no-mlflow", timeout_s=120)
    record_outcome(
        Outcome(
            scenario=f"Unusable experiments folder ({case})",
            category="fault",
            tried=1,
            unit="runs",
            lost=0 if done.returncode == 2 and "Traceback" not in done.stderr else 1,
            lost_meaning="a traceback, or a trial started",
            expected="one clear error, exit 2, before any server starts",
            test=current_test(),
        )
    )
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert expected in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (experiments / "simulated-quick" / "trials").exists()


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_sigterm_of_the_tuner_mid_trial_stops_its_server_and_names_the_signal(tmp_path: Path) -> None:
    """A batch scheduler's or `timeout`'s SIGTERM stops the study as Ctrl-C does, and the trial says which it was."""
    space = write_space(tmp_path / "space.yaml", parameters=SERVING_PARAMETERS, load={"num_requests": 400},
                        trial={"stop_timeout_s": 2, "warmup_requests": 2})
    experiments = tmp_path / "experiments"
    args = ["tune", str(space), "--study", "termed", "--experiments-dir", str(experiments), "--no-mlflow", "--n-trials", "2"]
    tuner = start_cli(args, tmp_path / "tune.log")
    try:
        victim = wait_for(lambda: running_trial_with_server(load_trials(experiments / "termed", "termed"), number=0),
                          timeout_s=90, what="trial 0 to start its server")
        wait_for(lambda: completed_requests(victim.user_attrs[attrs.SERVER_URL]) >= 4, timeout_s=60,
                 what="trial 0's benchmark to be under way")
        tuner.send_signal(signal.SIGTERM)
        code = tuner.wait(timeout=60)
    finally:
        if tuner.poll() is None:
            tuner.kill()
            tuner.wait()
    [trial] = load_trials(experiments / "termed", "termed") or []
    assert code != 0
    assert trial.state is TrialState.FAIL and trial.user_attrs[attrs.FAIL_REASON] == f"{attrs.INTERRUPTED} (SIGTERM)"
    assert not group_alive(int(victim.user_attrs[attrs.SERVER_PGID]))
    # what the trial cost until then is on record (a lease's end cut the first one-GPU study so, 2026-12-07)
    timings = trial.user_attrs[attrs.TIMINGS]
    assert timings["startup_s"] > 0 and timings["warmup_s"] > 0 and timings["total_s"] >= timings["startup_s"]
    assert "total_s" in trial.user_attrs[attrs.START_PHASES]
    assert summarize_trial_cost(experiments / "termed", gpus=1).trials == 1
