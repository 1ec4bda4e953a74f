"""`autotune best STUDY --storage URL`: the winner of a study run by workers elsewhere, chosen from the shared storage."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from helpers.tune import FakeRunner, space_from

from autotune.tune.settings import TuneSettings
from autotune.tune.study import run_tuning


def test_best_from_the_shared_storage_on_a_host_without_the_study_folder(tmp_path: Path, quick_space_data: dict) -> None:
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    space = space_from(quick_space_data)
    worker = TuneSettings(experiments_dir=tmp_path / "worker", storage=storage, mlflow=False, n_trials=4)
    outcome = run_tuning(space, worker, runner_factory=FakeRunner)
    assert outcome.best_path is not None
    (outcome.best_path.parent / "trials").rename(tmp_path / "elsewhere")  # the trial files stay on the worker
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOTUNE_")}
    done = subprocess.run(
        [sys.executable, "-m", "autotune.cli", "best", "simulated-quick", "--experiments-dir", str(tmp_path / "laptop")],
        capture_output=True, text=True, timeout=120, check=False, env={**env, "AUTOTUNE_STORAGE": storage},
    )
    assert done.returncode == 0, done.stderr
    here = yaml.safe_load((tmp_path / "laptop" / "simulated-quick" / "best.yaml").read_text())
    there = yaml.safe_load(outcome.best_path.read_text())
    assert here["engine_config"] == there["engine_config"]
    assert here["provenance"]["trial_number"] == there["provenance"]["trial_number"] == outcome.best_trial
    assert here["provenance"]["hardware"] == {} and "result file is on the worker that measured it" in here["provenance"]["notes"]
    missing = subprocess.run(
        [sys.executable, "-m", "autotune.cli", "best", "nope", "--storage", storage, "--experiments-dir", str(tmp_path / "laptop")],
        capture_output=True, text=True, timeout=120, check=False, env=env,
    )
    assert missing.returncode == 2 and "study 'nope': not found in sqlite" in missing.stderr
