"""`autotune tune` refuses clearly, before any trial: bad space, missing engine, unwritable folder, full disk."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import yaml
from helpers.tune import QUICK_SPACE, quick_space_mapping, space_from
from optuna.trial import TrialState, create_trial

from autotune.config import EngineConfig, Provenance, TunedConfig
from autotune.space import load_search_space
from autotune.tune import attrs
from autotune.tune.report import comparison_table, eta_s
from autotune.tune.session import open_study
from autotune.tune.settings import TuneSettings


def _tune(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autotune.cli", "tune", *args],
        capture_output=True, text=True, timeout=120, check=False, env={**os.environ, **(env or {})},
    )


def test_vllm_engine_without_vllm_is_refused_before_any_study(tmp_path: Path) -> None:
    done = _tune(str(QUICK_SPACE), "--engine", "vllm", "--experiments-dir", str(tmp_path))
    assert done.returncode == 2
    assert "vLLM is not installed" in done.stderr and "--engine simulated" in done.stderr
    assert not (tmp_path / "simulated-quick" / "optuna.db").exists()


def test_unwritable_experiments_folder_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    done = _tune(str(QUICK_SPACE), "--experiments-dir", str(blocker / "experiments"))
    assert done.returncode == 2 and "is not writable" in done.stderr


def test_nearly_full_disk_is_refused(tmp_path: Path) -> None:
    done = _tune(str(QUICK_SPACE), "--experiments-dir", str(tmp_path), env={"AUTOTUNE_MIN_FREE_GIB": "1e9"})
    assert done.returncode == 2 and "GiB free" in done.stderr


def test_bad_space_names_the_parameter(tmp_path: Path) -> None:
    space = tmp_path / "bad.yaml"
    space.write_text(
        QUICK_SPACE.read_text().replace("kv_cache_dtype: {type: categorical, choices: [auto, fp8]}",
                                        "kv_cache_dtype: {type: categorical, choices: [auto, fp16]}")
    )
    done = _tune(str(space), "--experiments-dir", str(tmp_path))
    assert done.returncode == 2
    assert "parameters.kv_cache_dtype.choices[1]" in done.stderr and "'fp8'" in done.stderr


def _space_file(folder: Path, **changes: object) -> Path:
    """The quick space with changes, written into `folder` (its model given as an absolute path)."""
    data = quick_space_mapping()
    data["engine_base"]["model"] = space_from(data).engine_base.model
    data.update({k: v for k, v in changes.items() if k != "model"})
    if "model" in changes:
        data["engine_base"]["model"] = changes["model"]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_what_a_trial_reads_is_checked_before_the_study_one_line_per_problem(tmp_path: Path) -> None:
    space = _space_file(tmp_path / "spaces", workload="data/mine.jsonl", model=str(tmp_path / "no-model"))
    done = _tune(str(space), "--experiments-dir", str(tmp_path / "experiments"), "--no-mlflow")
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 2, done.stderr
    assert "workload" in lines[0] and str(tmp_path / "spaces" / "data" / "mine.jsonl") in lines[0]  # next to the YAML
    assert f"engine_base.model: {tmp_path / 'no-model'}: no such file or folder" in lines[1]
    assert not (tmp_path / "experiments").exists()  # no study folder, no study: the fixed re-run is the same study
    (tmp_path / "spaces" / "data").mkdir()
    (tmp_path / "spaces" / "data" / "mine.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{"oops"\n')
    done = _tune(str(space), "--experiments-dir", str(tmp_path / "experiments"), "--no-mlflow")
    assert done.returncode == 2 and "mine.jsonl:2: not valid JSON" in done.stderr


def test_a_workload_typo_leaves_no_study_behind_so_the_fixed_space_runs(tmp_path: Path) -> None:
    experiments = tmp_path / "experiments"
    typo = _space_file(tmp_path / "a", workload="vlm-chta")
    done = _tune(str(typo), "--experiments-dir", str(experiments), "--no-mlflow")
    assert done.returncode == 2 and "workload: workload 'vlm-chta': not a file and not a built-in" in done.stderr
    assert not experiments.exists()
    fixed = _space_file(tmp_path / "a", workload="vlm-chat")
    done = _tune(str(fixed), "--experiments-dir", str(experiments), "--no-mlflow", "--n-trials", "0")
    assert "different search space" not in done.stderr and "study simulated-quick" in done.stdout, done.stderr
    assert (experiments / "simulated-quick" / "optuna.db").is_file()


def test_a_budget_spent_on_failures_says_so_and_how_to_go_on(tmp_path: Path) -> None:
    space_file = _space_file(tmp_path, budget={"n_trials": 2})
    experiments = tmp_path / "experiments"
    session = open_study(load_search_space(space_file), TuneSettings(experiments_dir=experiments, mlflow=False))
    for _ in range(2):
        session.study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={attrs.FAIL_REASON: "server crashed at start"}))
    done = _tune(str(space_file), "--experiments-dir", str(experiments), "--no-mlflow")
    text = " ".join(done.stdout.split())
    assert "its budget of 2 trials is spent (2 fail; no trial feasible: the budget went on failures)" in text, done.stdout
    assert "autotune trials simulated-quick" in text and "--n-trials N" in text
    assert done.returncode == 1 and len(optuna.load_study(study_name="simulated-quick", storage=session.storage_url).trials) == 3


def test_eta_is_median_trial_time_times_trials_left() -> None:
    assert eta_s([10.0, 30.0, 12.0], 5) == 60.0
    assert eta_s([], 5) is None and eta_s([4.0], None) is None


def _comparison_text(trial: int, metrics: dict[str, float], baseline: dict[str, float]) -> str:
    from rich.console import Console

    tuned = TunedConfig(
        engine_config=EngineConfig(model="m"),
        provenance=Provenance(study="s", trial_number=trial, metrics=metrics, baseline_metrics=baseline),
    )
    console = Console(width=200, record=True)
    console.print(comparison_table(tuned))
    return console.export_text()


def test_comparison_table_reports_ratios() -> None:
    text = _comparison_text(4, {"throughput_rps": 30.0, "ttft_ms_p99": 50.0}, {"throughput_rps": 20.0, "ttft_ms_p99": 100.0})
    assert "1.50x" in text and "0.50x" in text and "trial 4" in text


def test_comparison_table_marks_a_censored_slo_rate_as_a_lower_bound() -> None:
    text = _comparison_text(14, {"slo_rate_rps": 53.0, "slo_rate_censored": 1.0}, {"slo_rate_rps": 35.07, "slo_rate_censored": 0.0})
    line = next(x for x in text.splitlines() if "slo_rate_rps" in x)
    assert "≥ 53" in line and "≥ 35" not in line
