"""Flat figures of a benchmark summary: the one naming used by objectives, constraints, MLflow and tables.

Names carry their unit and statistic: `throughput_rps`, `ttft_ms_p99`, `gpu_util_mean`,
`client_saturated` (0 or 1). Pure functions of a `Summary`; nothing here measures anything.

GPU activity comes in two kinds: `gpu_util_*` is NVML's utilization, a busy flag (the share of time any kernel ran);
`gpu_sm_active_*`, `gpu_sm_occupancy_mean`, `gpu_tensor_active_*` and `gpu_dram_bw_*` are NVML GPM's SM counters
(percent). `gpu_gpm_available` is 1 where the window has GPM figures, 0 where GPM was unavailable (the reason is the
summary's `gpm_status`); without GPU telemetry there is no `gpu_*` figure at all.

The names an objective or a constraint may use are `autotune.space.MetricName`.
"""

from __future__ import annotations

from autotune.bench.schemas import Stats, Summary
from autotune.observe.names import (
    GPM_AVAILABLE_METRIC,
    GPM_FIELDS,
    GPM_INTERVALS_METRIC,
    GPU_FIELDS,
    GPU_SAMPLES_METRIC,
    NVML_BUSY_METRIC,
    SERVER_CPU_PREFIX,
    SERVER_CPU_TOTAL_METRIC,
    SM_ACTIVE_METRIC,
    gpu_metric,
    peak_metric,
    server_cpu_busiest_process_cores,
    server_cpu_cores_mean,
    server_metric,
)

LATENCY_FIELDS = ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms")
STAT_FIELDS = tuple(Stats.model_fields)


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
        for field in (*GPU_FIELDS, *GPM_FIELDS):
            figures[gpu_metric(field)] = getattr(gpu, field)
        figures[GPU_SAMPLES_METRIC] = float(gpu.samples)
        if gpu.gpm_status is not None:  # None: a result from before GPM sampling, which says nothing either way
            figures[GPM_AVAILABLE_METRIC] = 0.0 if gpu.sm_active_mean is None else 1.0
            figures[GPM_INTERVALS_METRIC] = float(gpu.gpm_intervals)
    for key, value in summary.server.items():
        figures[server_metric(key)] = float(value)
    cpu = summary.server_cpu
    if cpu is not None:  # where the server's CPU time goes, by process role (the frontend/engine-core profile)
        figures[SERVER_CPU_TOTAL_METRIC] = cpu.total_cores_mean
        for role, use in cpu.roles.items():
            if use.processes:
                figures[server_cpu_cores_mean(role)] = use.cores_mean
                figures[server_cpu_busiest_process_cores(role)] = use.busiest_process_cores_mean
    return figures


PEAK_FIGURES = ("throughput_rps", NVML_BUSY_METRIC, SM_ACTIVE_METRIC)


def peak_metrics(summary: Summary) -> dict[str, float | None]:
    """`peak_*`: throughput, GPU activity (NVML busy, SM active) and the server CPU profile of the highest-throughput
    window."""
    figures = summary_metrics(summary)
    return {
        peak_metric(key): value
        for key, value in figures.items()
        if key in PEAK_FIGURES or key.startswith(SERVER_CPU_PREFIX)
    }


def trial_metrics(summary: Summary, peak: Summary | None) -> dict[str, float | None]:
    """A trial's figures: its reported window's, plus `peak_*` from its highest-throughput window when it had several."""
    return summary_metrics(summary) | (peak_metrics(peak) if peak is not None else {})


