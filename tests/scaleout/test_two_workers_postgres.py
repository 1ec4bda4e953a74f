"""Two `autotune tune` worker processes at once on one PostgreSQL study (simulated engine, shared MLflow file)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

REPO = Path(__file__).resolve().parents[2]
N_TRIALS_EACH = 3


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_two_workers_share_a_study_without_repeats_or_losses(postgres_url: str, tmp_path: Path) -> None:
    study = "scaleout"
    mlflow_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    command = [
        sys.executable, "-m", "autotune.cli", "tune", str(REPO / "search_spaces" / "simulated-quick.yaml"),
        "--engine", "simulated", "--study", study, "--storage", postgres_url, "--n-trials", str(N_TRIALS_EACH),
        "--experiments-dir", str(tmp_path / "experiments"), "--mlflow-uri", mlflow_uri,
    ]
    env = {**os.environ, "COLUMNS": "200"}
    import mlflow

    # The MLflow store exists before the workers start (as a cluster's MLflow server would): two processes
    # creating one fresh SQLite store race in MLflow's schema migration and the loser logs nothing.
    mlflow.MlflowClient(mlflow_uri).search_experiments()
    workers = [
        subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [worker.communicate(timeout=220)[0] for worker in workers]
    (tmp_path / "workers.log").write_text("\n=====\n".join(outputs))
    for worker, output in zip(workers, outputs, strict=True):
        assert worker.returncode in (0, 1), output[-3000:]  # 1: no feasible best (a valid study outcome)

    trials = optuna.load_study(study_name=study, storage=postgres_url).get_trials(deepcopy=False)
    assert len(trials) == 2 * N_TRIALS_EACH  # the defaults trial is one of the six
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    served = [t for t in trials if t.user_attrs.get("server_pid") is not None]
    hashes = [t.user_attrs["config_hash"] for t in served]
    assert len(hashes) == len(set(hashes)), f"a config was served twice: {hashes}"
    assert {t.user_attrs.get("worker_pid") for t in trials} == {w.pid for w in workers}  # both workers ran trials

    mlflow.set_tracking_uri(mlflow_uri)
    runs = mlflow.search_runs(
        search_all_experiments=True, filter_string=f"tags.`autotune.study` = '{study}' and tags.`autotune.role` = 'trial'"
    )
    logged = sorted(int(n) for n in runs["tags.autotune.trial_number"])
    assert logged == sorted(t.number for t in trials)  # every trial logged, and exactly once
