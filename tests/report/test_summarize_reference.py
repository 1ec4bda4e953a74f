"""autotune.report.runs.reference on a tiny synthetic experiment folder (no dependence on the real GPU files)."""

from __future__ import annotations

import json
from pathlib import Path

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
from autotune.observe.cpu import RoleCpu, ServerCpuProfile
from autotune.observe.gpu import GpuSummary
from autotune.cli.main import app
from autotune.report.runs import reference as sr
from autotune.report.runs.folder import Layout


def _cpu(api: float, core: float) -> ServerCpuProfile:
    role = lambda cores: RoleCpu(  # noqa: E731
        processes=1, cores_mean=cores, cores_p95=cores, cores_max=cores, busiest_process_cores_mean=cores, threads_max=4
    )
    return ServerCpuProfile(
        root_pid=1, roles={"api_server": role(api), "engine_core": role(core)}, total_cores_mean=api + core,
        total_cores_p95=api + core, total_cores_max=api + core, top_processes=[], samples=5, window_s=1.0,
        interval_s=0.2, affinity=[0, 1, 2], host_cpus=8,
    )


def _summary(rps: float, *, ttft_p50: float = 100.0, slo_rate: float | None = None, util: float = 50.0) -> Summary:
    return Summary(
        throughput_rps=rps, slo_rate_rps=slo_rate, ttft_ms=Stats(p50=ttft_p50, p99=2 * ttft_p50),
        tpot_ms=Stats(p50=10.0, p99=20.0), gpu=GpuSummary(devices=["GPU"], samples=3, util_mean=util),
        server_cpu=_cpu(0.5, 2.0),
    )


def _write(folder: Path, name: str, summary: Summary, mode: str = "concurrency") -> None:
    load = LoadSpec(mode=mode, concurrency=64)  # type: ignore[arg-type]
    sweep = [summary] if mode == "slo_rate" else []
    timeseries = [{"t_s": float(t), "device": 0.0, "util_pct": 40.0 + t} for t in range(-2, 5)]
    result = BenchResult(
        url="http://127.0.0.1:1", workload={"name": "vlm-chat"}, load=load, slo=SLO(ttft_ms=2000, tpot_ms=50),
        summary=summary, sweep=sweep, gpu_timeseries=timeseries,
    )
    save_result(result, folder / f"{name}.json.gz")


def _vllm_bench(folder: Path, name: str, rps: float, ttft_p50: float, concurrency: int) -> None:
    (folder / f"{name}.json").write_text(
        json.dumps({"request_throughput": rps, "median_ttft_ms": ttft_p50, "max_concurrency": concurrency})
    )


def _study(root: Path, name: str) -> None:
    study = root / "study" / name
    (study / "trials").mkdir(parents=True)
    header = "number,state,config_kind,reason,param_max_num_seqs,metric_slo_rate_rps,metric_throughput_rps," \
        "metric_ttft_ms_p99,metric_tpot_ms_p99,metric_gpu_util_mean"
    rows = ["0,FAIL,vllm-defaults,boom,,,,,,", "1,COMPLETE,sampled,,128.0,12.0,10.0,300.0,20.0,40.0",
            "2,COMPLETE,sampled,,256.0,15.0,11.0,500.0,25.0,45.0"]
    (study / "trials.csv").write_text("\n".join([header, *rows]) + "\n")
    timings = {0: (10.0, None, 10.5), 1: (20.0, 30.0, 55.0), 2: (40.0, 50.0, 95.0)}
    for n, (startup, measure, total) in timings.items():
        d = study / "trials" / str(n)
        d.mkdir()
        (d / "server.log").write_text("ERROR 11-25 [core.py:1] ValueError: Free memory too low\n" if n == 0 else "ok\n")
        timing = {"startup_s": startup, "measure_s": measure, "total_s": total}
        (d / "trial.json").write_text(json.dumps({"number": n, "timings": timing, "server_cpus": [0, 1]}))


@pytest.fixture()
def experiment(tmp_path: Path) -> Path:
    m = tmp_path / "measurements"
    m.mkdir()
    (m / "env.json").write_text(json.dumps({"date": "2026-11-25T00:00:00Z", "gpus": ["GPU X"], "cpu_count": 8, "versions": {}}))
    for c, (ours, raw) in {16: (18.0, 20.0), 128: (50.0, 50.0), 256: (66.0, 60.0)}.items():
        _write(m, f"bench-autotune-serve-c{c}", _summary(ours, ttft_p50=110.0))
        _write(m, f"bench-vllm-serve-c{c}", _summary(raw))
    _vllm_bench(m, "vllm-bench-c16", 20.0, 100.0, 16)
    for k in range(2):
        _vllm_bench(m, f"vllm-bench-c128-p{k}", 25.0, 900.0, 64)
    for k in range(4):
        _vllm_bench(m, f"vllm-bench-c256-p{k}", 15.0, 1500.0, 64)
    _write(m, "slo-rate-autotune-serve-defaults", _summary(30, slo_rate=36.0), "slo_rate")
    _write(m, "slo-rate-vllm-serve-defaults", _summary(30, slo_rate=40.0), "slo_rate")
    _write(m, "slo-rate-compare-defaults", _summary(30, slo_rate=40.0, util=50.0), "slo_rate")
    _write(m, "slo-rate-compare-best", _summary(40, slo_rate=50.0, util=60.0), "slo_rate")
    for side, rps in (("defaults", 40.0), ("best", 45.0)):
        for c in (64, 128, 256):
            _write(m, f"compare-{side}-c{c}", _summary(rps + c / 64))
    _study(tmp_path, "h100-qwen3-vl-4b")
    return tmp_path


def test_overhead_agreement_and_ratio(experiment: Path) -> None:
    layout = Layout(experiment)
    overhead = sr.serving_overhead(layout)
    assert overhead["throughput"]["c16"]["overhead_pct"] == pytest.approx(10.0)  # (20 - 18) / 20
    assert overhead["throughput"]["c128"]["overhead_pct"] == pytest.approx(0.0)
    assert overhead["throughput"]["c256"]["overhead_pct"] == pytest.approx(-10.0)  # ours faster
    assert overhead["throughput_mean_pct"] == pytest.approx(0.0)
    assert overhead["slo_rate"]["overhead_pct"] == pytest.approx(10.0)  # (40 - 36) / 40

    agreement = sr.agreement(layout)
    assert agreement["c16"]["throughput_diff_pct"] == pytest.approx(-10.0)  # 18 vs 20
    assert agreement["c16"]["ttft_p50_diff_pct"] == pytest.approx(10.0)  # 110 vs 100
    assert agreement["c128"]["vllm_bench_rps"] == pytest.approx(50.0)  # two processes summed
    assert agreement["c128"]["throughput_diff_pct"] == pytest.approx(0.0)
    assert agreement["c256"]["vllm_bench_processes"] == 4
    assert agreement["c256"]["throughput_diff_pct"] == pytest.approx(10.0)  # 66 vs 4 x 15

    goodput = sr.goodput(layout)
    assert goodput["best_vs_default"] == pytest.approx(1.25)
    assert (goodput["gpu_util_mean_default"], goodput["gpu_util_mean_best"]) == (50.0, 60.0)


def test_run_writes_summary_tables_and_plots(experiment: Path) -> None:
    summary = sr.summarize_reference(experiment, "summary.json", "h100-qwen3-vl-4b", "qwen3-vl-4b-2gpu")
    assert summary["median_trial_s"] == pytest.approx(75.0)  # trials 1 and 2 served; trial 0 did not
    assert summary["median_trial_startup_s"] == pytest.approx(30.0)
    assert summary["trials"]["h100-qwen3-vl-4b"] == {"COMPLETE": 2, "FAIL": 1}
    assert summary["simulator_median_abs_error_pct"] is None and summary["simulator_note"]
    assert [r["slo_rate_rps"] for r in summary["defaults_slo_rate_runs"]] == [36.0, 40.0, 40.0]
    written = json.loads((experiment / "summary.json").read_text())
    assert written["best_goodput_rps"] == 50.0
    tables = (experiment / "tables.md").read_text()
    assert "ValueError: Free memory too low" in tables  # the server log's root cause, not the generic reason
    assert "max_num_seqs=128" in tables  # integral params shown as ints, not 128.0
    assert "max_num_seqs=256" in tables
    for plot in ("throughput_latency_vs_concurrency", "gpu_util_over_time", "server_cpu_by_role", "pareto_front",
                 "trial_time_breakdown"):
        assert (experiment / "plots" / f"{plot}.png").stat().st_size > 1000


def test_calibration_errors_are_read_when_present(experiment: Path) -> None:
    (experiment / "calibration").mkdir()
    report = {"median_abs_error_held_out": {"throughput_pct": 7.5, "ttft_p50_pct": 12.0},
              "median_abs_error_in_sample": {"throughput_pct": 3.0, "ttft_p50_pct": 5.0}}
    (experiment / "calibration" / "report.json").write_text(json.dumps(report))
    errors, note = sr.calibration_errors(Layout(experiment))
    assert note is None
    assert errors["held_out"]["throughput_pct"] == 7.5 and errors["in_sample"]["ttft_p50_pct"] == 5.0


def test_the_command_writes_the_summary_under_the_name_given(experiment: Path) -> None:
    shown = CliRunner().invoke(app, ["summarize", "reference", str(experiment), "--summary-name", "summary-run-a.json"])
    assert shown.exit_code == 0, shown.output
    assert shown.output.splitlines()[0] == (
        f"wrote {experiment / 'summary-run-a.json'}, {experiment / 'tables.md'}, {experiment / 'plots'}/"
    )
    assert json.loads((experiment / "summary-run-a.json").read_text())["best_goodput_rps"] == 50.0
    assert not (experiment / "summary.json").exists()
