"""Collecting calibration points: only closed-loop GPU measurements with a known config; the rest skipped with reasons."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from calib_helpers import BASE, bench_result, measured_points, write_json

from autotune.calibrate.dataset import collect_points
from autotune.errors import ConfigError


def test_points_and_skips_with_their_reasons(tmp_path: Path) -> None:
    gpu, other = measured_points(BASE, noise=0.0)[:2]
    write_json(tmp_path / "a" / "bench-gpu-c4.json", bench_result(gpu))
    write_json(tmp_path / "a" / "bench-sim.json", bench_result(other, simulated=True))
    write_json(tmp_path / "a" / "bench-open-loop.json", bench_result(other, mode="rate"))
    write_json(tmp_path / "a" / "bench-all-failed.json", bench_result(other, completed=0))
    write_json(tmp_path / "a" / "bench-raw-vllm.json", bench_result(other, server_config=False))
    (tmp_path / "a" / "bench-garbage.json").write_text("{not json")
    # a trial folder: config.yaml beside result.json, and an MLflow artifact copy of the same result
    trial = tmp_path / "b" / "trials" / "3"
    write_json(trial / "result.json", bench_result(other, server_config=False))
    (trial / "config.yaml").write_text(f"engine: vllm\nengine_config: {json.dumps(other.engine_config.model_dump(mode='json'))}\n")
    write_json(trial / "trial.json", {"number": 3, "state": "complete", "engine": "vllm", "simulated": False})
    write_json(tmp_path / "b" / "mlartifacts" / "x" / "artifacts" / "result.json", bench_result(other, server_config=False))
    (tmp_path / "b" / "mlartifacts" / "x" / "artifacts" / "config.yaml").write_text((trial / "config.yaml").read_text())
    failed_trial = tmp_path / "b" / "trials" / "4"
    write_json(failed_trial / "result.json", bench_result(gpu))
    write_json(failed_trial / "trial.json", {"number": 4, "state": "failed", "reason": "server crashed", "simulated": False})

    dataset = collect_points([tmp_path / "a", tmp_path / "b"])

    used = sorted(Path(p.source).relative_to(tmp_path).as_posix() for p in dataset.points)
    assert used == ["a/bench-gpu-c4.json", "b/trials/3/result.json"]
    reasons = {Path(s.source).relative_to(tmp_path).as_posix(): s.reason for s in dataset.skipped}
    assert reasons == {
        "a/bench-sim.json": "simulated",
        "a/bench-open-loop.json": "not_closed_loop",
        "a/bench-all-failed.json": "failed",
        "a/bench-raw-vllm.json": "no_config",
        "a/bench-garbage.json": "unreadable",
        "b/mlartifacts/x/artifacts/result.json": "duplicate",
        "b/trials/4/result.json": "failed",
    }
    assert all(point.simulated is False for point in dataset.points)
    point = next(p for p in dataset.points if p.source.endswith("bench-gpu-c4.json"))
    assert (point.concurrency, point.throughput_rps, point.ttft_ms_p50) == (gpu.concurrency, gpu.throughput_rps, gpu.ttft_ms_p50)
    assert point.engine_config == gpu.engine_config and point.vllm_version == "0.24.0"
    assert dataset.skip_counts()["failed"] == 2


def test_a_simulated_trial_config_is_never_ground_truth(tmp_path: Path) -> None:
    point = measured_points(BASE, noise=0.0)[0]
    trial = tmp_path / "trials" / "0"
    write_json(trial / "result.json", bench_result(point, server_config=False))
    (trial / "config.yaml").write_text(f"engine: simulated\nengine_config: {json.dumps(point.engine_config.model_dump(mode='json'))}\n")
    dataset = collect_points([tmp_path])
    assert dataset.points == [] and [s.reason for s in dataset.skipped] == ["simulated"]


def test_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such folder of results"):
        collect_points([tmp_path / "nope"])


def test_an_slo_rate_result_contributes_its_capacity_probe_and_gz_files_are_read(tmp_path: Path) -> None:
    import gzip

    probe, other = measured_points(BASE, noise=0.0)[:2]
    data = bench_result(other)
    data["load"] = {"mode": "slo_rate", "concurrency": probe.concurrency, "num_requests": None, "duration_s": 8}
    probe_summary = bench_result(probe)["summary"]
    data["sweep"] = [probe_summary, {**data["summary"], "concurrency": None, "offered_rate_rps": 10.0}]
    data["summary"] = {**data["summary"], "concurrency": None, "offered_rate_rps": 10.0, "slo_rate_rps": 10.0}
    data["server_config"]["engine_config"] = probe.engine_config.model_dump(mode="json")
    target = tmp_path / "slo-rate-defaults.json.gz"
    target.write_bytes(gzip.compress(json.dumps(data).encode()))
    (point,) = collect_points([tmp_path]).points
    # the closed-loop probe is the point: its concurrency and figures, not the open-loop window's
    assert (point.concurrency, point.throughput_rps, point.ttft_ms_p50) == (probe.concurrency, probe.throughput_rps, probe.ttft_ms_p50)


def test_a_cache_flattered_measurement_is_not_a_point(tmp_path: Path) -> None:
    point = measured_points(BASE, noise=0.0)[0]
    result = bench_result(point)
    result["summary"]["cache"] = {"prefix_hit_rate": 0.99, "mm_hit_rate": 1.0, "flattered": True, "reason": "repeated dataset"}
    write_json(tmp_path / "bench-repeated.json", result)
    dataset = collect_points([tmp_path])
    assert dataset.points == [] and [(s.reason, s.detail) for s in dataset.skipped] == [("cache_flattered", "repeated dataset")]
