"""autotune.report.runs.headline on a tiny synthetic run folder: the headline comes from the confirmed trials' files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from autotune.bench.result import save_result
from autotune.bench.schemas import (
    SLO,
    BenchResult,
    LoadSpec,
    Stats,
    Summary,
)
from autotune.observe.gpu import GpuSummary
from autotune.cli.main import app
from autotune.errors import AutotuneError
from autotune.report.runs import headline

STUDIES = ("qwen3-vl-4b-reference", "qwen3-vl-4b-reference-v2")


def _result(folder: Path, slo_rate: float, util: float, *, censored: bool) -> None:
    summary = Summary(
        throughput_rps=slo_rate * 0.8, slo_rate_rps=slo_rate, slo_rate_censored=censored,
        ttft_ms=Stats(p50=100.0, p99=900.0), tpot_ms=Stats(p50=20.0, p99=40.0),
        gpu=GpuSummary(devices=["GPU"], samples=3, util_mean=util),
    )
    result = BenchResult(url="http://127.0.0.1:1", workload={"name": "vlm-chat"}, load=LoadSpec(mode="slo_rate", concurrency=8, duration_s=1),
                         slo=SLO(ttft_ms=2000, tpot_ms=50), summary=summary, sweep=[summary])
    folder.mkdir(parents=True)
    save_result(result, folder / "result.json.gz")


def _run(root: Path) -> Path:
    study = root / "2026-01-02" / "study" / "qwen3-vl-4b-reference-v2"
    values = {0: (40.0, 45.0, False), 1: (100.0, 97.0, True), 2: (44.0, 50.0, False), 3: (104.0, 96.0, True)}
    for number, (rate, util, censored) in values.items():
        _result(study / "trials" / str(number), rate, util, censored=censored)
    (study / "confirmation.json").write_text(json.dumps({"defaults": {"trials": [0, 2]}, "best": {"trials": [1, 3]}}))
    pd.DataFrame([
        {"number": 0, "state": "COMPLETE", "duplicate_of": None, "timing_total_s": 200.0, "timing_startup_s": 150.0,
         "timing_warmup_s": 5.0, "timing_measure_s": 40.0, "timing_stop_s": 5.0},
        {"number": 1, "state": "COMPLETE", "duplicate_of": None, "timing_total_s": 260.0, "timing_startup_s": 200.0,
         "timing_warmup_s": 5.0, "timing_measure_s": 50.0, "timing_stop_s": 5.0},
        {"number": 2, "state": "COMPLETE", "duplicate_of": 0.0, "timing_total_s": None, "timing_startup_s": None,
         "timing_warmup_s": None, "timing_measure_s": None, "timing_stop_s": None},
        {"number": 3, "state": "PRUNED", "duplicate_of": None, "timing_total_s": 10.0, "timing_startup_s": 1.0,
         "timing_warmup_s": 1.0, "timing_measure_s": 1.0, "timing_stop_s": 1.0},
    ]).to_csv(study / "trials.csv", index=False)
    return study


def test_the_confirmed_pair_and_the_trial_cost_come_from_the_trials_files(tmp_path: Path) -> None:
    study = _run(tmp_path)
    assert headline.confirmed_runs(tmp_path, STUDIES) == [(tmp_path / "2026-01-02", study)]
    pair = headline.confirmed(study)
    assert pair["defaults"]["slo_rate_mean_rps"] == 42.0 and pair["best"]["slo_rate_mean_rps"] == 102.0
    assert pair["best"]["any_lower_bound"] and not pair["defaults"]["any_lower_bound"]
    assert pair["best"]["gpu_util_mean_pct"] == 96.5 and pair["defaults"]["slo_rate_range_rps"] == [40.0, 44.0]
    cost = headline.trial_cost(study)  # served trials only: the duplicate and the pruned one are not
    assert cost["trials_served"] == 2 and cost["median_trial_s"] == 230.0 and cost["fastest_trial_s"] == 200.0
    assert cost["median_parts_s"]["startup_s"] == 175.0


def test_a_folder_without_a_confirmation_says_so(tmp_path: Path) -> None:
    with pytest.raises(AutotuneError, match="no run with a confirmation.json"):
        headline.build_headline(tmp_path, None, STUDIES, tmp_path / "sustained")


def test_the_command_says_what_it_wrote_and_a_missing_confirmation_is_an_error(tmp_path: Path) -> None:
    shown = CliRunner().invoke(app, ["summarize", "headline", str(tmp_path), "--sustained-root", str(tmp_path / "none")])
    assert shown.exit_code != 0 and isinstance(shown.exception, AutotuneError)
    assert "no run with a confirmation.json" in str(shown.exception)


SUSTAINED_ROOT = Path(__file__).resolve().parents[2] / "experiments" / "sustained"


def test_each_config_comes_from_its_latest_run_and_gpus_apart_give_no_ratio(tmp_path: Path) -> None:
    for name in ("2026-12-04-h200", "2026-12-05-h100"):
        shutil.copytree(SUSTAINED_ROOT / name, tmp_path / name)
    figures = headline.sustained(None, tmp_path)
    assert figures is not None and figures["window_s"] == 120
    assert figures["defaults"]["source"].endswith("2026-12-04-h200") and figures["best"]["source"].endswith("2026-12-05-h100")
    assert "H200" in figures["defaults"]["gpus"][0] and "H100" in figures["best"]["gpus"][0]
    assert figures["same_gpu"] is False and figures["best_vs_defaults"] is None
    assert figures["best_vs_defaults_across_runs"] is None


def test_two_runs_on_one_gpu_model_give_a_ratio_labeled_across_runs(tmp_path: Path) -> None:
    for name in ("2026-12-04-h200", "2026-12-05-h100", "2026-12-07-h100"):
        shutil.copytree(SUSTAINED_ROOT / name, tmp_path / name)
    figures = headline.sustained(None, tmp_path)
    assert figures is not None and figures["defaults"]["source"].endswith("2026-12-07-h100")  # the latest defaults
    assert figures["same_gpu"] is True and figures["same_run"] is False and figures["best_vs_defaults"] is None
    assert figures["best_vs_defaults_across_runs"] == round(figures["best"]["rate_rps"] / figures["defaults"]["rate_rps"], 3)


def test_both_configs_in_one_run_give_their_ratio(tmp_path: Path) -> None:
    run = tmp_path / "2026-12-06-h200"
    shutil.copytree(SUSTAINED_ROOT / "2026-12-04-h200", run)
    shutil.copytree(SUSTAINED_ROOT / "2026-12-05-h100" / "best", run / "best")  # measured beside the defaults
    figures = headline.sustained(run, tmp_path)
    assert figures is not None and figures["same_gpu"] is True and figures["same_run"] is True
    assert figures["best_vs_defaults"] == round(figures["best"]["rate_rps"] / figures["defaults"]["rate_rps"], 3)
    assert figures["best_vs_defaults_across_runs"] is None
