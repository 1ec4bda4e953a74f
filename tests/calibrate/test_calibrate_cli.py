"""`autotune calibrate` on a folder of small BenchResult files: a calibrated profile and a report; clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from calib_helpers import BASE, bench_result, measured_points, truth_profile, write_json
from typer.testing import CliRunner

from serving.engines.profile import SimulatorProfile

REPO = Path(__file__).resolve().parents[2]


def _app():  # type: ignore[no-untyped-def]
    from autotune.cli.main import app

    return app


def test_cli_writes_a_calibrated_profile_and_reports(tmp_path: Path) -> None:
    truth = truth_profile({"frontend.image_preprocess_ms_base": 7.0})
    results = tmp_path / "results"
    for index, point in enumerate(measured_points(truth, noise=0.02)):
        write_json(results / f"bench-{index}.json", bench_result(point))
    write_json(results / "bench-sim.json", bench_result(measured_points(BASE, noise=0.0)[0], simulated=True))
    out, md, js = tmp_path / "new.json", tmp_path / "calib.md", tmp_path / "calib.json"
    args = ["calibrate", str(results), "--parameter", "frontend.image_preprocess_ms_base", "--max-evals", "15", "--folds", "0"]

    ran = CliRunner().invoke(_app(), [*args, "--output", str(out), "--report", str(md)], terminal_width=200)
    assert ran.exit_code == 0, ran.output
    assert "skipped 1 result file(s): simulated 1" in ran.output and "median abs error, fitted, in-sample" in ran.output

    profile = SimulatorProfile.load(out)
    assert profile.calibrated is True and profile.name == "h100-qwen3-vl-4b-calibrated"
    info = profile.calibration
    assert info is not None and info.points == 6 and info.skipped == {"simulated": 1}
    assert info.source_folders == [str(results)] and info.vllm_versions == ["0.24.0"]
    assert info.gpu_names == ["NVIDIA H100 80GB HBM3"]
    fitted = info.fitted_parameters["frontend.image_preprocess_ms_base"]
    assert profile.frontend.image_preprocess_ms_base == fitted and abs(fitted - 7.0) < 0.7
    assert info.median_abs_error_in_sample.throughput_pct is not None
    assert info.median_abs_error_before.throughput_pct is not None
    assert info.median_abs_error_in_sample.throughput_pct < info.median_abs_error_before.throughput_pct
    assert info.held_out_method.startswith("none")
    text = md.read_text()
    assert "predicted_* figures are simulator predictions" in text and text.count("| bench-") == 0
    assert text.count(str(results / "bench-")) == 6 + 1  # six rows and the skipped one

    ran = CliRunner().invoke(_app(), [*args, "--report", str(js)])
    assert ran.exit_code == 0, ran.output
    report = json.loads(js.read_text())
    assert len(report["rows"]) == 6 and report["points"] == 6
    assert {"measured_throughput_rps", "predicted_throughput_rps_after", "throughput_error_pct_after"} <= set(report["rows"][0])


def test_no_points_names_the_folder_and_each_skip(tmp_path: Path) -> None:
    results = tmp_path / "results"
    write_json(results / "bench-sim.json", bench_result(measured_points(BASE, noise=0.0)[0], simulated=True))
    ran = subprocess.run(
        [sys.executable, "-m", "autotune.cli", "calibrate", str(results)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert ran.returncode == 2
    assert f"no calibration points in {results}" in ran.stderr
    assert "bench-sim.json: simulated" in ran.stderr
    bad = CliRunner().invoke(_app(), ["calibrate", str(results), "--report", str(tmp_path / "r.txt")])
    assert "the suffix must be .md or .json (got '.txt')" in str(bad.exception)
