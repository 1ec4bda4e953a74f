"""GPU activity in trial metrics, MLflow records, `autotune trials` and `autotune bench`'s report: NVML's busy flag and
the SM counters (GPM) side by side, labeled; "GPM unavailable" where a GPU had no GPM, never a zero."""

from __future__ import annotations

import io

from rich.console import Console

from autotune.bench.report import gpu_rows, totals_table
from autotune.bench.schemas import Summary
from autotune.observe.gpu import GpuSummary
from autotune.tune import attrs
from autotune.tune.metrics import summary_metrics
from autotune.tune.report import gpu_activity_cell

H200 = GpuSummary(devices=["NVIDIA H200"], samples=400, util_mean=99.9, util_p95=100.0, gpm_status="ok", gpm_intervals=399,
                  sm_active_mean=70.0, sm_active_p50=71.0, sm_active_p95=80.0, sm_occupancy_mean=21.0,
                  tensor_active_mean=24.0, tensor_active_p95=30.0, dram_bw_mean=25.0, dram_bw_p95=33.0)
A100 = GpuSummary(devices=["NVIDIA A100"], samples=400, util_mean=99.5,
                  gpm_status="unavailable: GPU 0 (NVIDIA A100) does not support GPM (Hopper or newer has it)")


def _summary(gpu: GpuSummary | None) -> Summary:
    return Summary(completed=10, failed=0, duration_s=1.0, throughput_rps=10.0, gpu=gpu)


def test_trial_metrics_carry_both_kinds_and_whether_gpm_was_there() -> None:
    figures = summary_metrics(_summary(H200))
    assert figures["gpu_util_mean"] == 99.9 and figures["gpu_sm_active_mean"] == 70.0
    assert figures["gpu_sm_occupancy_mean"] == 21.0 and figures["gpu_tensor_active_mean"] == 24.0
    assert figures["gpu_dram_bw_p95"] == 33.0 and figures["gpu_gpm_available"] == 1.0
    without = summary_metrics(_summary(A100))
    assert without["gpu_gpm_available"] == 0.0 and without["gpu_sm_active_mean"] is None  # absent, not 0
    assert "gpu_gpm_available" not in summary_metrics(_summary(GpuSummary(util_mean=50.0)))  # recorded before GPM
    assert not any(key.startswith("gpu_") for key in summary_metrics(_summary(None)))


def test_the_mlflow_record_has_the_gpm_figures_and_status() -> None:
    metrics = {k: v for k, v in summary_metrics(_summary(A100)).items() if v is not None}
    record = attrs.trial_record(number=3, state="COMPLETE", params={}, study_tags={},
                                user_attrs={attrs.METRICS: metrics, attrs.GPM_STATUS: A100.gpm_status})
    assert record.tags[attrs.GPM_STATUS] == A100.gpm_status and record.metrics["gpu_gpm_available"] == 0.0
    assert "gpu_sm_active_mean" not in record.metrics
    ok = attrs.trial_record(number=4, state="COMPLETE", params={}, study_tags={}, user_attrs={
        attrs.METRICS: {k: v for k, v in summary_metrics(_summary(H200)).items() if v is not None}, attrs.GPM_STATUS: "ok"})
    assert ok.metrics["gpu_sm_active_mean"] == 70.0 and ok.metrics["gpu_util_mean"] == 99.9


def test_the_trials_table_cells_say_gpm_unavailable_where_it_was() -> None:
    row = {f"metric_{k}": v for k, v in summary_metrics(_summary(A100)).items()}
    assert gpu_activity_cell(row, "metric_gpu_util_mean") == "99.5"
    assert gpu_activity_cell(row, "metric_gpu_sm_active_mean") == "GPM unavailable"
    assert gpu_activity_cell({"metric_gpu_sm_active_mean": float("nan")}, "metric_gpu_sm_active_mean") == "-"  # no GPU
    h200 = {f"metric_{k}": v for k, v in summary_metrics(_summary(H200)).items()}
    assert gpu_activity_cell(h200, "metric_gpu_sm_active_mean") == "70.0"


def _shown(summary: Summary) -> str:
    out = io.StringIO()
    Console(file=out, width=200).print(totals_table(summary))
    return out.getvalue()


def test_the_bench_report_labels_nvml_busy_and_sm_active() -> None:
    shown = _shown(_summary(H200))
    assert "GPU NVML busy % mean / p95 (any kernel running)" in shown and "99.9 / 100.0" in shown
    assert "GPU SM active (GPM) % mean / p95" in shown and "70.0 / 80.0" in shown
    assert "21.0 / 24.0 / 25.0" in shown  # occupancy / tensor pipes / DRAM bandwidth
    rows = dict(gpu_rows(A100))
    assert rows["GPU SM active (GPM)"] == "GPM unavailable: GPU 0 (NVIDIA A100) does not support GPM (Hopper or newer has it)"
    assert not any("occupancy" in name for name in rows)
    assert "GPM unavailable" in dict(gpu_rows(None))["GPU"]
