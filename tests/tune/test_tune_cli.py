"""`autotune tune` refuses clearly, before any trial: bad space, missing engine, unwritable folder, full disk."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tune_helpers import QUICK_SPACE

from autotune.config import EngineConfig, Provenance, TunedConfig
from autotune.tune.report import comparison_table, eta_s


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
