"""`autotune summarize trial-cost STUDY_DIR`: a study's wall time, median trial and start phases (issue 17's record),
on a real simulated study (two trials, one of them forked from the warm parent's)."""

from __future__ import annotations

import json
from pathlib import Path

from helpers.tune import quick_space_mapping, space_from
from typer.testing import CliRunner

from autotune.cli.main import app
from autotune.report.trial_cost import summarize_trial_cost
from autotune.tune.settings import TuneSettings
from autotune.tune.study import run_tuning


def test_a_studys_trial_cost_comes_from_its_store(tmp_path: Path) -> None:
    quick_space_data = quick_space_mapping()
    quick_space_data["parameters"] = {"max_num_seqs": {"type": "categorical", "choices": [2, 8]}}
    outcome = run_tuning(space_from(quick_space_data), TuneSettings(experiments_dir=tmp_path, n_trials=2, mlflow=False,
                                                                     warm_start=True))
    trials = [json.loads(p.read_text()) for p in sorted(outcome.study_dir.glob("trials/*/trial.json"))]
    summary = summarize_trial_cost(outcome.study_dir, gpus=1)
    assert summary.simulated and summary.gpus == 1 and summary.trials == 2 and summary.states == {"COMPLETE": 2}
    totals = sorted(t["timings"]["total_s"] for t in trials)
    assert summary.median_trial_s == round((totals[0] + totals[1]) / 2, 1)
    assert totals[1] <= summary.study_wall_s  # the study spans its trials
    startups = [t["timings"]["startup_s"] for t in trials]
    assert summary.median_trial_parts_s["startup_s"] == round(sum(startups) / 2, 1)
    assert summary.median_start_phases_s["total_s"] is not None and summary.median_start_phases_s["engine_core_s"] is None
    assert summary.warm_starts == 2 and summary.compile_cache == {}  # the simulated engine compiles nothing
    out = tmp_path / "trial-cost" / "summary.json"
    result = CliRunner().invoke(app, ["summarize", "trial-cost", str(outcome.study_dir), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text()) == summary.model_dump(mode="json")
