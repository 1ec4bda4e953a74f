"""Warm starts (`autotune tune --warm-start`): trial servers forked from a parent that imported their modules once.

Real processes on the simulated engine: the warm parent, the servers it forks (each in its own process group and
session, stopped as a group, dying with the parent), a start that fails, the environment rule that makes a trial
start cold, and a study whose trials are all forked.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import psutil
import pytest
from helpers.servers import MODEL_DIR as MODEL
from helpers.serving_testlib import write_simulated_config
from helpers.tune import space_from
from optuna.trial import TrialState
from typer.testing import CliRunner

from autotune.cli.main import app
from autotune.config import EngineConfig, EngineKind
from autotune.observe.stacks.profiler import DIR_ENV
from autotune.report.trial_cost import summarize_trial_cost
from autotune.tune import attrs
from autotune.tune.measure import stack_profile_env
from autotune.tune.server_process import ServerProcess, ServerStartError, process_group_exists, server_environment
from autotune.tune.session import open_study
from autotune.tune.settings import TuneSettings
from autotune.tune.study import run_tuning
from autotune.tune.warm_start import (
    AUTOSTART_DIR,
    PRELOAD,
    WARM_PARENT_LOG,
    WarmParent,
    import_time_env_differs,
)
from serving.start_env import engine_start_env

SERVE = ["--model", MODEL, "--engine", "simulated", "--port", "0"]


@pytest.fixture
def parent(tmp_path: Path) -> Iterator[WarmParent]:
    warm = WarmParent(EngineKind.SIMULATED, tmp_path / WARM_PARENT_LOG)
    assert warm.unusable is None, warm.unusable
    try:
        yield warm
    finally:
        warm.close()


def _gone(pid: int, timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_warm_server_is_a_fork_of_the_parent_in_its_own_group_and_stops_as_one(
    parent: WarmParent, tmp_path: Path
) -> None:
    assert "autotune.cli.serve" in parent.modules and parent.info["loaded_modules"] > 100
    assert parent.info["python_threads"] == 1 and parent.info["cuda_initialized"] is False
    assert parent.info["os_threads"] >= 1
    server = ServerProcess.from_serve_args(SERVE, log_path=tmp_path / "server.log", launcher=parent)
    with server:
        assert httpx.get(f"{server.base_url}/health", timeout=5).status_code == 200
        process = psutil.Process(server.pid)
        assert process.ppid() == parent.pid  # forked by the parent, not a new interpreter started by us
        assert os.getpgid(server.pid) == server.pid == server.pgid != os.getpgid(parent.pid)  # its own group
        assert os.getsid(server.pid) == server.pid  # and its own session
        assert f"forked from the warm parent (pid {parent.pid})" in server.log_tail(200)
    assert server.exit_code is not None
    assert not process_group_exists(server.pgid)
    # the parent outlives its servers and forks the next one
    with ServerProcess.from_serve_args(SERVE, log_path=tmp_path / "second.log", launcher=parent) as second:
        assert httpx.get(f"{second.base_url}/health", timeout=5).status_code == 200


def test_a_forked_server_that_fails_at_start_is_a_crash_with_its_exit_code(parent: WarmParent, tmp_path: Path) -> None:
    server = ServerProcess.from_serve_args(
        ["--config", str(tmp_path / "missing.yaml"), "--port", "0"], log_path=tmp_path / "server.log", launcher=parent
    )
    with pytest.raises(ServerStartError) as caught:
        server.start()
    assert caught.value.reason == "crashed" and caught.value.exit_code not in (None, 0)
    assert "missing.yaml" in caught.value.log_tail


def test_servers_die_with_the_warm_parent(tmp_path: Path) -> None:
    warm = WarmParent(EngineKind.SIMULATED, tmp_path / WARM_PARENT_LOG)
    server = ServerProcess.from_serve_args(SERVE, log_path=tmp_path / "server.log", launcher=warm)
    try:
        server.start()
        os.kill(warm.pid, signal.SIGKILL)  # a tuner killed with its parent: no server may be left serving
        assert _gone(server.pid), "the forked server outlived its parent"
    finally:
        warm.close()
        server.stop(timeout_s=5)


def test_a_server_whose_warm_parent_died_after_it_was_chosen_starts_cold_and_says_why(tmp_path: Path) -> None:
    warm = WarmParent(EngineKind.SIMULATED, tmp_path / WARM_PARENT_LOG)
    try:
        assert warm.cold_start_reason(server_environment()) is None  # the trial chose the warm start ...
        os.kill(warm.pid, signal.SIGKILL)  # ... and the parent died before the fork
        assert _gone(warm.pid)
        server = ServerProcess.from_serve_args(SERVE, log_path=tmp_path / "server.log", launcher=warm)
        with server:
            assert httpx.get(f"{server.base_url}/health", timeout=5).status_code == 200
            assert psutil.Process(server.pid).ppid() == os.getpid()  # a new interpreter of ours, not a fork
        assert server.launch_failure is not None and "warm parent" in server.launch_failure
        assert server.launcher is None and not process_group_exists(server.pgid)
    finally:
        warm.close()


def test_what_is_read_at_import_makes_a_trial_start_cold(parent: WarmParent, tmp_path: Path) -> None:
    assert parent.cold_start_reason(server_environment({"VLLM_CACHE_ROOT": "/cache"})) is None  # read when used
    # the stack profiler's variables: a forked server starts the profiler itself
    profiled = stack_profile_env(tmp_path, 100)
    assert DIR_ENV in profiled and AUTOSTART_DIR in profiled["PYTHONPATH"]
    assert parent.cold_start_reason(server_environment(profiled)) is None
    reason = parent.cold_start_reason(server_environment({"PYTHONPATH": "/elsewhere", "OMP_NUM_THREADS": "3"}))
    assert reason is not None and "PYTHONPATH" in reason and "OMP_NUM_THREADS" in reason
    assert import_time_env_differs({"OMP_NUM_THREADS": "4", "X": "1"}, {"X": "2"}) == ["OMP_NUM_THREADS"]
    # read by the loader and glibc's allocator at exec: a fork of the parent would run without them
    assert import_time_env_differs({}, {"MALLOC_MMAP_THRESHOLD_": "131072", "LD_PRELOAD": "/j.so", "GLIBC_TUNABLES": "x"}) == [
        "GLIBC_TUNABLES", "LD_PRELOAD", "MALLOC_MMAP_THRESHOLD_"]


def test_a_vllm_warm_parent_starts_with_the_engines_start_time_defaults_and_its_forks_need_no_second_exec(
    tmp_path: Path,
) -> None:
    # the vLLM parent's environment, with the simulated engine's modules (no vLLM here)
    warm = WarmParent(EngineKind.VLLM, tmp_path / WARM_PARENT_LOG, modules=PRELOAD[EngineKind.SIMULATED])
    try:
        assert warm.unusable is None, warm.unusable
        trial_env = server_environment(engine_start_env(EngineKind.VLLM))
        assert trial_env["MALLOC_MMAP_THRESHOLD_"] == "131072" and warm.cold_start_reason(trial_env) is None
        reason = warm.cold_start_reason(server_environment({}))
        assert reason is not None and "MALLOC_MMAP_THRESHOLD_" in reason
        # a served config that sets it as the parent started: the fork keeps the parent's allocator, so it serves
        # as forked, although setproctitle has overwritten the /proc/PID/environ it inherited
        config = write_simulated_config(tmp_path / "tuned.yaml", engine_config=EngineConfig(
            model=MODEL, max_model_len=4096, env=engine_start_env(EngineKind.VLLM)))
        args = ["--config", str(config), "--port", "0"]
        with ServerProcess.from_serve_args(args, log_path=tmp_path / "server.log", env=trial_env, launcher=warm) as server:
            assert httpx.get(f"{server.base_url}/health", timeout=5).status_code == 200
            assert psutil.Process(server.pid).ppid() == warm.pid
        assert "executing again" not in (tmp_path / "server.log").read_text()
    finally:
        warm.close()


def test_a_parent_whose_import_fails_is_not_used_and_says_why(tmp_path: Path) -> None:
    warm = WarmParent(EngineKind.SIMULATED, tmp_path / WARM_PARENT_LOG, modules=["autotune.cli.serve", "no_such_module_x"])
    reason = warm.cold_start_reason(server_environment())
    assert reason is not None and "no_such_module_x" in reason and "ModuleNotFoundError" in reason
    assert warm._process.poll() is not None  # nothing left running


def test_a_warm_start_study_forks_every_trial_leaves_no_parent_and_its_cost_is_summarized(tmp_path: Path, quick_space_data: dict) -> None:
    quick_space_data["parameters"] = {"max_num_seqs": {"type": "categorical", "choices": [2, 8]}}
    outcome = run_tuning(space_from(quick_space_data), TuneSettings(experiments_dir=tmp_path, n_trials=2, mlflow=False,
                                                                     warm_start=True))
    assert outcome.counts.get("COMPLETE") == 2, outcome.counts
    trials = [json.loads(p.read_text()) for p in sorted(outcome.study_dir.glob("trials/*/trial.json"))]
    assert [t["warm_start"] for t in trials] == [True, True] and all(t["cold_start_reason"] is None for t in trials)
    for trial in trials:
        assert "forked from the warm parent" in Path(trial["log_path"]).read_text()
    log = (outcome.study_dir / WARM_PARENT_LOG).read_text()
    assert not any("autotune.cli.warm_parent" in " ".join(p.cmdline()) for p in psutil.Process().children(recursive=True)), log
    # the trials table says how each server started
    table = pd.read_csv(outcome.trials_csv)
    assert table["warm_start"].tolist() == [True, True]
    # and `autotune summarize trial-cost` (issue 17's summary.json) reads the study's cost from its store
    summary = summarize_trial_cost(outcome.study_dir, gpus=1)
    assert summary.simulated and summary.gpus == 1 and summary.trials == 2 and summary.states == {"COMPLETE": 2}
    totals = [t["timings"]["total_s"] for t in trials]
    assert summary.median_trial_s == round(sum(totals) / 2, 1) and max(totals) <= summary.study_wall_s
    assert summary.median_trial_parts_s["startup_s"] == round(sum(t["timings"]["startup_s"] for t in trials) / 2, 1)
    assert summary.median_start_phases_s["total_s"] is not None and summary.median_start_phases_s["engine_core_s"] is None
    assert summary.warm_starts == 2 and summary.compile_cache == {}  # the simulated engine compiles nothing
    out = tmp_path / "trial-cost" / "summary.json"
    result = CliRunner().invoke(app, ["summarize", "trial-cost", str(outcome.study_dir), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text()) == summary.model_dump(mode="json")


def test_a_forked_server_profiles_its_stacks_like_a_cold_one(tmp_path: Path, quick_space_data: dict) -> None:
    quick_space_data["parameters"] = {"max_num_seqs": {"type": "categorical", "choices": [4]}}
    settings = TuneSettings(experiments_dir=tmp_path, n_trials=1, mlflow=False, warm_start=True, stack_profile_hz=100)
    outcome = run_tuning(space_from(quick_space_data), settings)
    trial = json.loads((outcome.study_dir / "trials" / "0" / "trial.json").read_text())
    assert trial["warm_start"] is True, trial["cold_start_reason"]
    profile = json.loads((outcome.study_dir / "trials" / "0" / "stack_profile.json").read_text())
    windows = {w["label"]: w for w in profile["windows"]}
    assert set(windows) == {"start", "phase00-c8"}
    [server] = windows["phase00-c8"]["processes"]
    assert server["complete"] and server["samples"] > 10  # the forked server sampled its measured window


def test_forked_servers_that_crash_or_hang_fail_their_trials_and_the_next_one_starts_clean(
    tmp_path: Path, quick_space_data: dict
) -> None:
    faults = ["crash_at_start", "hang_at_start", "crash_after_requests:3", "none"]
    quick_space_data["parameters"] = {"env.AUTOTUNE_SIMULATED_FAULT": {"type": "categorical", "choices": faults}}
    quick_space_data["trial"].update(startup_timeout_s=10)
    space = space_from(quick_space_data)
    settings = TuneSettings(experiments_dir=tmp_path, mlflow=False, warm_start=True)
    session = open_study(space, settings)
    for fault in faults:
        session.study.enqueue_trial({"env.AUTOTUNE_SIMULATED_FAULT": fault})
    run_tuning(space, settings.model_copy(update={"n_trials": 5}))  # trial 0 is the defaults, then the faults
    trials = {t.params.get("env.AUTOTUNE_SIMULATED_FAULT"): t for t in session.study.get_trials(deepcopy=False)}
    expected = {"crash_at_start": "server crashed at start", "hang_at_start": "server timed out at start",
                "crash_after_requests:3": "server exited during the benchmark"}
    for fault, reason in expected.items():
        trial = trials[fault]
        assert trial.state is TrialState.FAIL and reason in trial.user_attrs[attrs.FAIL_REASON], fault
        pgid = trial.user_attrs.get(attrs.SERVER_PGID)
        assert pgid is None or not process_group_exists(int(pgid)), f"{fault}: server group left"
    # forked, and failed as a cold start fails
    assert trials["crash_at_start"].user_attrs[attrs.WARM_START] is trials["hang_at_start"].user_attrs[attrs.WARM_START] is True
    assert trials[None].state is TrialState.COMPLETE and trials[None].user_attrs[attrs.WARM_START] is True
    # a forked server that hung at start turns the warm start off: the later trials start cold and say why
    for later in ("crash_after_requests:3", "none"):
        assert trials[later].user_attrs[attrs.WARM_START] is False, later
        assert "hung at start" in trials[later].user_attrs[attrs.COLD_START_REASON], later
    assert trials["none"].state is TrialState.COMPLETE


TITLE_AFTER_FORKS = """
import multiprocessing, os, sys, time
import setproctitle
from autotune.cli import warm_parent
if sys.argv[1] == "set-up":
    warm_parent.preload([])
if os.fork() == 0:  # a trial's server: the environment replaced, as the warm parent's child does
    env = dict(os.environ); os.environ.clear(); os.environ.update(env)
    core = multiprocessing.get_context("fork").Process(
        target=lambda: (setproctitle.setproctitle("VLLM::EngineCore"), time.sleep(5)))  # as vLLM's engine core
    core.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "VLLM::" not in open(f"/proc/{core.pid}/cmdline").read():
        time.sleep(0.05)
    print(open(f"/proc/{core.pid}/cmdline").read().split(chr(0))[0].strip(), flush=True)
    core.kill()
    os._exit(0)
os.wait()
"""


@pytest.mark.parametrize("set_up", [True, False])
def test_processes_forked_from_the_warm_parent_can_title_themselves_as_vllm_does(set_up: bool, tmp_path: Path) -> None:
    """Without the set-up, an engine core forked from a forked server keeps the parent's command line: on an H100 on
    2026-12-07 the CPU profile then found no engine core and no API server (both "other")."""
    script = tmp_path / "forks.py"  # a program file, as `python -m autotune.cli.warm_parent` (not `python -c`)
    script.write_text(TITLE_AFTER_FORKS)
    out = subprocess.run([sys.executable, str(script), "set-up" if set_up else "none"],
                         capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    if set_up:
        assert out == "VLLM::EngineCore"
    else:  # setproctitle's own limit, which the set-up exists for: if this changes, the set-up may go
        assert "VLLM::" not in out
