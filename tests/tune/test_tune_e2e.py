"""End to end on the simulated engine: real `autotune tune` and `autotune serve` processes on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import mlflow
import optuna
import pandas as pd
import pytest
import yaml
from helpers.tune import QUICK_SPACE, space_from
from optuna.trial import TrialState

from autotune.config import load_tuned_config
from autotune.errors import ConfigError
from autotune.tracking import default_tracking_uri
from autotune.tune import attrs
from autotune.tune.storage import make_storage
from autotune.tune.session import open_study
from autotune.tune.settings import TuneSettings
from autotune.tune.study import run_tuning
from autotune.tune.server_process import ServerProcess, process_group_exists

pytestmark = pytest.mark.slow

STUDY = "simulated-quick"


def _cli(*args: str, timeout_s: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autotune.cli", *args], capture_output=True, text=True, timeout=timeout_s, check=False
    )



def _wait_group_gone(pgid: int, timeout_s: float = 15) -> bool:
    deadline = time.monotonic() + timeout_s
    while process_group_exists(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _load(study_dir: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=make_storage(f"sqlite:///{study_dir / 'optuna.db'}", heartbeat=False))


@pytest.fixture(scope="module")
def quick_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    experiments = tmp_path_factory.mktemp("experiments")
    done = _cli("tune", str(QUICK_SPACE), "--experiments-dir", str(experiments), "--n-trials", "10")
    return experiments / STUDY, done


def test_a_ten_trial_study_runs_end_to_end(quick_study: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    study_dir, done = quick_study
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "SIMULATED" in done.stdout
    assert "autotune report" in done.stdout  # where the figures come from (the tuner draws none)
    assert not (study_dir / "plots").exists()
    study = _load(study_dir, STUDY)
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
    assert len(finished) == 10
    assert study.trials[0].user_attrs[attrs.CONFIG_KIND] == attrs.VLLM_DEFAULTS
    assert study.trials[0].state is TrialState.COMPLETE
    for trial in study.get_trials(states=(TrialState.COMPLETE,)):
        if attrs.DUPLICATE_OF not in trial.user_attrs:
            assert Path(trial.user_attrs[attrs.RESULT_PATH]).is_file()
            assert (Path(trial.user_attrs[attrs.TRIAL_DIR]) / "config.yaml").is_file()
        assert trial.user_attrs[attrs.SIMULATED] is True
    for trial in study.get_trials(states=(TrialState.PRUNED,)):
        assert trial.user_attrs[attrs.PRUNE_REASON]
    tuned = load_tuned_config(study_dir / "best.yaml")
    assert tuned.provenance.simulated and tuned.provenance.study == STUDY
    assert tuned.provenance.baseline_metrics["throughput_rps"] > 0
    best = study.trials[tuned.provenance.trial_number]
    assert tuned.provenance.metrics == best.user_attrs[attrs.METRICS]


def test_best_yaml_is_served_unchanged(quick_study: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    study_dir, _ = quick_study
    best = study_dir / "best.yaml"
    tuned = load_tuned_config(best)
    with ServerProcess(best, port=0, log_path=tmp_path / "serve.log", startup_timeout_s=60) as server:
        body = {
            "model": tuned.engine_config.name_for_clients,
            "messages": [{"role": "user", "content": "Describe a cat."}],
            "max_tokens": 8,
        }
        reply = httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=30)
        assert reply.status_code == 200, reply.text
        assert reply.headers["x-autotune-engine"] == "simulated"
        assert reply.json()["choices"][0]["message"]["content"]
        shown = httpx.get(f"{server.base_url}/autotune/config", timeout=10).json()
    text = str(shown)
    assert STUDY in text and "provenance" in text
    assert str(tuned.engine_config.max_num_seqs) in text


def test_mlflow_has_the_study_and_its_trials(quick_study: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    study_dir, _ = quick_study
    mlflow.set_tracking_uri(default_tracking_uri(study_dir))
    runs = mlflow.search_runs(experiment_names=["autotune"], filter_string=f"tags.`autotune.study` = '{STUDY}'")
    parents = runs[runs["tags.autotune.role"] == "study"]
    trials = runs[runs["tags.autotune.role"] == "trial"]
    assert len(parents) == 1 and len(trials) == 10
    assert set(trials["tags.mlflow.parentRunId"]) == {parents.iloc[0]["run_id"]}
    assert set(runs["tags.simulated"]) == {"true"} and set(runs["tags.engine"]) == {"simulated"}
    assert trials["tags.versions"].str.contains('"optuna"').all() and trials["tags.hardware"].str.contains("cpu_count").all()
    complete = trials[trials["tags.trial_state"] == "COMPLETE"]
    assert (complete["metrics.throughput_rps"] > 0).all() and complete["metrics.ttft_ms_p99"].notna().all()
    assert complete["params.engine.max_model_len"].eq("8192").all()
    parent_files = {f.path for f in mlflow.artifacts.list_artifacts(run_id=parents.iloc[0]["run_id"], artifact_path="study")}
    assert {"study/best.yaml", "study/trials.csv"} <= parent_files


def test_best_and_trials_commands(quick_study: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    study_dir, _ = quick_study
    shown = _cli("best", STUDY, "--experiments-dir", str(study_dir.parent), timeout_s=60)
    assert shown.returncode == 0, shown.stderr
    assert "best / default" in shown.stdout and "SIMULATED" in shown.stdout
    csv = tmp_path / "trials.csv"
    exported = _cli("trials", STUDY, "--experiments-dir", str(study_dir.parent), "--csv", str(csv), timeout_s=60)
    assert exported.returncode == 0, exported.stderr
    frame = pd.read_csv(csv)
    assert len(frame) == 10 and frame.loc[0, "config_kind"] == attrs.VLLM_DEFAULTS
    missing = _cli("best", "no-such-study", "--experiments-dir", str(study_dir.parent), timeout_s=60)
    assert missing.returncode == 2 and "no-such-study" in missing.stderr


def test_the_trials_table_piped_keeps_a_row_a_line_and_integers_whole(
    quick_study: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    study_dir, _ = quick_study
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}  # piped, as `autotune trials S | grep ...`
    shown = subprocess.run(
        [sys.executable, "-m", "autotune.cli", "trials", STUDY, "--experiments-dir", str(study_dir.parent)],
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    header = next(line for line in lines if "max_num_seqs" in line).split("┃")  # rich's header row, then "│" rows
    rows = [cells for cells in (line.split("│") for line in lines) if len(cells) == len(header) and cells[1].strip().isdigit()]
    assert len(rows) == 10 and max(len("│".join(cells)) for cells in rows) > 80  # a line a trial, not wrapped at 80
    column = [cell.strip() for cell in header].index("max_num_seqs")
    seqs = [cells[column].strip() for cells in rows]
    # an int parameter prints 8, not 8.00 (pandas holds the column as floats: trial 0, vLLM's defaults, sets none)
    assert seqs[0] == "-" and all(cell.isdigit() for cell in seqs[1:]), seqs


def _derived_space(quick_space_data: dict[str, Any], tmp_path: Path, **changes: Any) -> Path:
    data = {**quick_space_data, **changes}
    base = dict(data["engine_base"])
    base["model"] = str((QUICK_SPACE.parent / base["model"]).resolve())
    data["engine_base"] = base
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))  # parameter order matters (`when` looks back)
    return path


def test_failing_servers_become_failed_trials_and_the_study_goes_on(
    quick_space_data: dict[str, Any], tmp_path: Path
) -> None:
    faults = ["crash_at_start", "crash_after_requests:3", "stall_after_requests:3", "hang_at_start", "none"]
    quick_space_data["parameters"] = {
        "env.AUTOTUNE_SIMULATED_FAULT": {"type": "categorical", "choices": faults},
    }
    # Limits a busy 2-core machine meets: a hang costs the whole start-up limit, a stall the whole measure limit.
    quick_space_data["trial"].update(startup_timeout_s=15, measure_timeout_s=8)
    space = space_from(quick_space_data)
    settings = TuneSettings(experiments_dir=tmp_path, mlflow=False)
    session = open_study(space, settings)
    for fault in faults:
        session.study.enqueue_trial({"env.AUTOTUNE_SIMULATED_FAULT": fault})
    outcome = run_tuning(space, settings.model_copy(update={"n_trials": 6}))
    trials = {t.params.get("env.AUTOTUNE_SIMULATED_FAULT"): t for t in session.study.get_trials(deepcopy=False)}
    expected = {
        "crash_at_start": "server crashed at start",
        "crash_after_requests:3": "server exited during the benchmark",
        "stall_after_requests:3": "did not finish within 8 s",
        "hang_at_start": "server timed out at start",
    }
    for fault, reason in expected.items():
        trial = trials[fault]
        assert trial.state is TrialState.FAIL, fault
        assert reason in trial.user_attrs[attrs.FAIL_REASON], (fault, trial.user_attrs[attrs.FAIL_REASON])
        pgid = trial.user_attrs.get(attrs.SERVER_PGID)
        if pgid is not None:
            assert _wait_group_gone(int(pgid)), f"{fault}: server group {pgid} still alive"
    assert trials["none"].state is TrialState.COMPLETE and trials[None].state is TrialState.COMPLETE
    assert outcome.ran == 6 and outcome.best_path is not None


def test_sigkill_mid_trial_then_resume(quick_space_data: dict[str, Any], tmp_path: Path) -> None:
    load = {**quick_space_data["load"], "num_requests": 48}  # a measurement long enough to be killed in
    space_file = _derived_space(quick_space_data, tmp_path, load=load)
    experiments = tmp_path / "experiments"
    args = ["tune", str(space_file), "--study", "killed", "--experiments-dir", str(experiments), "--no-mlflow"]
    log = (tmp_path / "tune.log").open("w")
    tuner = subprocess.Popen([sys.executable, "-m", "autotune.cli", *args, "--n-trials", "4"], stdout=log, stderr=log)
    study_dir = experiments / "killed"
    victim: optuna.trial.FrozenTrial | None = None
    finished_before: dict[int, list[float] | None] = {}
    try:
        deadline = time.monotonic() + 120
        while victim is None:
            assert time.monotonic() < deadline, (tmp_path / "tune.log").read_text()[-3000:]
            assert tuner.poll() is None, (tmp_path / "tune.log").read_text()[-3000:]
            time.sleep(0.2)
            if not (study_dir / "optuna.db").is_file():
                continue
            try:
                trials = _load(study_dir, "killed").get_trials(deepcopy=False)
            except (KeyError, ConfigError, optuna.exceptions.StorageInternalError):
                continue  # the tuner is still creating the database or the study
            complete = {t.number: t.values for t in trials if t.state is TrialState.COMPLETE}
            running = [t for t in trials if t.state is TrialState.RUNNING and attrs.SERVER_URL in t.user_attrs]
            if not complete or not running:
                continue
            try:
                up = httpx.get(running[0].user_attrs[attrs.SERVER_URL] + "/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                up = False
            if up:
                finished_before, victim = complete, running[0]
        tuner.send_signal(signal.SIGKILL)
        tuner.wait(timeout=30)
    finally:
        if tuner.poll() is None:
            tuner.kill()
            tuner.wait()
        log.close()
    resumed = _cli(*args, "--n-trials", "1", timeout_s=120)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    trials = _load(study_dir, "killed").trials
    interrupted = trials[victim.number]
    assert interrupted.state is TrialState.FAIL
    assert interrupted.user_attrs[attrs.FAIL_REASON].startswith(attrs.WORKER_DIED)
    for number, values in finished_before.items():  # no finished trial lost
        assert trials[number].state is TrialState.COMPLETE and trials[number].values == values
    assert _wait_group_gone(int(victim.user_attrs[attrs.SERVER_PGID]))
    assert f"[{victim.number}]" in resumed.stdout  # the resume reports the trial it failed
    assert len([t for t in trials if t.state.is_finished()]) == len(finished_before) + 2


def test_slo_rate_objective_on_the_simulated_engine(tmp_path: Path, quick_space_data: dict[str, Any]) -> None:
    data = dict(quick_space_data, objective="slo_rate")
    data["engine_base"] = dict(data["engine_base"], model=str((QUICK_SPACE.parent / data["engine_base"]["model"]).resolve()))
    data["load"] = {"mode": "slo_rate", "concurrency": 8, "num_requests": None, "duration_s": 1.0,
                    "slo_rate_fractions": [0.9, 0.5], "client_processes": 1,
                    "slo_rate_window_s": 1.0, "slo_rate_tolerance": 0.5}  # short fixed windows, one bracket step
    space_file = tmp_path / "space.yaml"
    space_file.write_text(yaml.safe_dump(data, sort_keys=False))
    cores = sorted(os.sched_getaffinity(0))
    server_cores, client_cores = cores[:1], cores[-1:]
    done = _cli("tune", str(space_file), "--experiments-dir", str(tmp_path / "exp"), "--n-trials", "1",
                "--study", "slo-rate", "--no-mlflow",
                "--server-cpus", str(server_cores[0]), "--client-cpus", str(client_cores[0]))
    assert done.returncode == 0, done.stderr[-2000:]
    trial = _load(tmp_path / "exp" / "slo-rate", "slo-rate").trials[0]
    assert trial.state is TrialState.COMPLETE and trial.user_attrs[attrs.SIMULATED] is True
    measured = trial.user_attrs[attrs.METRICS]["slo_rate_rps"]
    assert trial.values[0] == pytest.approx(measured)
    result = json.loads(Path(trial.user_attrs[attrs.RESULT_PATH]).read_text())
    assert result["simulated"] is True and result["load"]["mode"] == "slo_rate"
    assert len(result["sweep"]) >= 2 and result["summary"]["slo_rate_rps"] == measured
    # pinning is applied and recorded: the server's own process reports its affinity, the trial its cores
    assert trial.user_attrs[attrs.CPU_PINNING] == {"server": server_cores, "client": client_cores}
    profile = result["summary"]["server_cpu"]
    assert profile["affinity"] == server_cores and profile["samples"] >= 2 and profile["total_cores_mean"] > 0
    # the profile is a trial metric too (MLflow compares it across trials)
    assert trial.user_attrs[attrs.METRICS]["server_cpu_total_cores_mean"] == pytest.approx(profile["total_cores_mean"])


def test_a_trial_with_stack_profiling_records_the_servers_threads_in_each_window(tmp_path: Path) -> None:
    done = _cli("tune", str(QUICK_SPACE), "--experiments-dir", str(tmp_path), "--n-trials", "1", "--no-mlflow",
                "--stack-profile-hz", "100")
    assert done.returncode == 0, done.stderr[-2000:]
    trial = tmp_path / STUDY / "trials" / "0"
    profile = json.loads((trial / "stack_profile.json").read_text())
    # the quick space measures one closed-loop window; warm-up is left out; the start is profiled as its own window
    start, window = sorted(profile["windows"], key=lambda w: w["label"] != "start")
    assert start["label"] == "start" and window["label"] == "phase00-c8"
    [process] = window["processes"]  # the simulated engine serves from one process: `autotune serve`
    assert process["title"] == "cli_serve" and process["complete"] and process["samples"] > 10
    assert "MainThread" in {t["name"] for t in process["threads"]}
    assert not (trial / "stack-profile" / "window").exists()  # the gate is shut after the window
    table = pd.read_csv(tmp_path / STUDY / "trials.csv")  # its figures are trial metrics (MLflow, trials.csv)
    assert 0 <= table.loc[0, "metric_stack_api_server_event_loop_busy"] <= 1
