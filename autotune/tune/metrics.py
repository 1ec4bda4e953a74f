"""Flat figures of a benchmark summary: the one naming used by objectives, constraints, MLflow and tables.

Names carry their unit and statistic: `throughput_rps`, `ttft_ms_p99`, `gpu_util_mean`,
`client_saturated` (0 or 1). Pure functions of a `Summary`; nothing here measures anything.

GPU activity comes in two kinds: `gpu_util_*` is NVML's utilization, a busy flag (the share of time any kernel ran);
`gpu_sm_active_*`, `gpu_sm_occupancy_mean`, `gpu_tensor_active_*` and `gpu_dram_bw_*` are NVML GPM's SM counters
(percent). `gpu_gpm_available` is 1 where the window has GPM figures, 0 where GPM was unavailable (the reason is the
summary's `gpm_status`); without GPU telemetry there is no `gpu_*` figure at all.
"""

from __future__ import annotations

from typing import Literal, get_args

from autotune.bench.schemas import Stats, Summary

LATENCY_FIELDS = ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms")
STAT_FIELDS = tuple(Stats.model_fields)

MetricName = Literal[
    "completed",
    "failed",
    "duration_s",
    "throughput_rps",
    "goodput_rps",
    "slo_rate_rps",
    "slo_rate_censored",
    "slo_rate_failed_rps",
    "output_tok_s",
    "input_tok_s",
    "error_rate",
    "client_saturated",
    "cache_flattered",
    "cache_prefix_hit_rate",
    "cache_mm_hit_rate",
    "client_cpu_util_max",
    "client_loop_lag_p99_ms",
    "gpu_util_mean",
    "gpu_sm_active_mean",
    "gpu_tensor_active_mean",
    "gpu_dram_bw_mean",
    "gpu_mem_used_max_mib",
    "gpu_power_mean_w",
    "ttft_ms_mean",
    "ttft_ms_p50",
    "ttft_ms_p90",
    "ttft_ms_p95",
    "ttft_ms_p99",
    "tpot_ms_mean",
    "tpot_ms_p50",
    "tpot_ms_p90",
    "tpot_ms_p95",
    "tpot_ms_p99",
    "itl_ms_mean",
    "itl_ms_p99",
    "e2el_ms_mean",
    "e2el_ms_p50",
    "e2el_ms_p90",
    "e2el_ms_p95",
    "e2el_ms_p99",
]
METRIC_NAMES: tuple[str, ...] = get_args(MetricName)

GPM_FIELDS = ("sm_active_mean", "sm_active_p50", "sm_active_p95", "sm_occupancy_mean", "tensor_active_mean",
              "tensor_active_p95", "dram_bw_mean", "dram_bw_p95")
"""The `GpuSummary` fields of NVML GPM's SM counters (each a metric `gpu_<field>`)."""
SM_ACTIVE_METRIC = "gpu_sm_active_mean"
NVML_BUSY_METRIC = "gpu_util_mean"
GPM_AVAILABLE_METRIC = "gpu_gpm_available"


def summary_metrics(summary: Summary) -> dict[str, float | None]:
    """Every numeric figure of a summary, flattened (None where not measured)."""
    figures: dict[str, float | None] = {
        "completed": float(summary.completed),
        "failed": float(summary.failed),
        "duration_s": summary.duration_s,
        "throughput_rps": summary.throughput_rps,
        "goodput_rps": summary.goodput_rps,
        "slo_rate_rps": summary.slo_rate_rps,
        "slo_rate_censored": None if summary.slo_rate_censored is None else float(summary.slo_rate_censored),
        "slo_rate_failed_rps": summary.slo_rate_failed_rps,
        "output_tok_s": summary.output_tok_s,
        "input_tok_s": summary.input_tok_s,
        "error_rate": summary.error_rate,
    }
    steady = summary.steady
    if steady is not None:  # slo_rate: the reported window's steady part
        figures["steady_s"] = steady.steady_s
        figures["steady_backlog_growth"] = steady.backlog_growth
    for name in LATENCY_FIELDS:
        stats: Stats = getattr(summary, name)
        for stat in STAT_FIELDS:
            figures[f"{name}_{stat}"] = getattr(stats, stat)
    client = summary.client
    figures["client_saturated"] = 1.0 if client.saturated else 0.0
    figures["client_processes"] = float(client.processes)
    figures["client_cpu_util_max"] = client.cpu_util_max
    figures["client_loop_lag_p99_ms"] = client.loop_lag_p99_ms
    cache = summary.cache
    if cache is not None:  # a flattered window: requests reached the server twice (use {metric: cache_flattered, max: 0})
        figures["cache_flattered"] = 1.0 if cache.flattered else 0.0
        figures["cache_prefix_hit_rate"] = cache.prefix_hit_rate
        figures["cache_mm_hit_rate"] = cache.mm_hit_rate
    gpu = summary.gpu
    if gpu is not None:
        for field in ("util_mean", "util_p50", "util_p95", "mem_used_max_mib", "power_mean_w", "sm_clock_mean_mhz", *GPM_FIELDS):
            figures[f"gpu_{field}"] = getattr(gpu, field)
        figures["gpu_samples"] = float(gpu.samples)
        if gpu.gpm_status is not None:  # None: a result from before GPM sampling, which says nothing either way
            figures["gpu_gpm_available"] = 0.0 if gpu.sm_active_mean is None else 1.0
            figures["gpu_gpm_intervals"] = float(gpu.gpm_intervals)
    for key, value in summary.server.items():
        figures[f"server_{_safe_name(key)}"] = float(value)
    cpu = summary.server_cpu
    if cpu is not None:  # where the server's CPU time goes, by process role (the frontend/engine-core profile)
        figures["server_cpu_total_cores_mean"] = cpu.total_cores_mean
        for role, use in cpu.roles.items():
            if use.processes:
                figures[f"server_cpu_{role}_cores_mean"] = use.cores_mean
                figures[f"server_cpu_{role}_busiest_process_cores"] = use.busiest_process_cores_mean
    return figures


PEAK_PREFIX = "peak_"
PEAK_FIGURES = ("throughput_rps", NVML_BUSY_METRIC, SM_ACTIVE_METRIC)


def peak_metrics(summary: Summary) -> dict[str, float | None]:
    """`peak_*`: throughput, GPU activity (NVML busy, SM active) and the server CPU profile of the highest-throughput
    window."""
    figures = summary_metrics(summary)
    return {
        PEAK_PREFIX + key: value
        for key, value in figures.items()
        if key in PEAK_FIGURES or key.startswith("server_cpu_")
    }


def trial_metrics(summary: Summary, peak: Summary | None) -> dict[str, float | None]:
    """A trial's figures: its reported window's, plus `peak_*` from its highest-throughput window when it had several."""
    return summary_metrics(summary) | (peak_metrics(peak) if peak is not None else {})


def _safe_name(key: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "_-." else "_" for ch in key)
