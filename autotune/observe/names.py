"""The names observed figures are recorded under: trial metrics, MLflow keys, table columns.

Every name that a producer builds and a reader looks up is defined here once, as a constant or a small function,
and both sides import it. The names themselves are a contract (result JSON, Optuna user attributes, MLflow keys,
recorded experiments): changing one here renames it everywhere, so don't, except on purpose
(tests/observe/test_observe_names.py pins them).

- GPU: `gpu_<GpuSummary field>`; `gpu_util_*` is NVML's busy flag, `gpu_sm_active_*`, `gpu_sm_occupancy_mean`,
  `gpu_tensor_active_*`, `gpu_dram_bw_*` are NVML GPM's SM counters.
- Server CPU profile: `server_cpu_total_cores_mean`, `server_cpu_<role>_cores_mean`,
  `server_cpu_<role>_busiest_process_cores`.
- Prometheus: `server_<figure>` for each figure of the window's `/metrics` summary.
- Stack profile: `stack_engine_core_<activity>_share`, `stack_api_server_event_loop_busy`,
  `stack_api_server_preprocessing_busy`.
- `peak_<name>`: the same figure in the highest-throughput window (the capacity probe).
- `metric_<name>`: a metric as a column of a study's trials table.
"""

from __future__ import annotations

PEAK_PREFIX = "peak_"
METRIC_COLUMN_PREFIX = "metric_"


def peak_metric(name: str) -> str:
    """`peak_<name>`: the figure in the highest-throughput window."""
    return PEAK_PREFIX + name


def metric_column(name: str) -> str:
    """`metric_<name>`: the metric's column in a study's trials table."""
    return METRIC_COLUMN_PREFIX + name


# GPU: NVML and GPM figures of a window (`autotune.observe.gpu.GpuSummary`), flattened.
GPU_PREFIX = "gpu_"
GPU_FIELDS = ("util_mean", "util_p50", "util_p95", "mem_used_max_mib", "power_mean_w", "sm_clock_mean_mhz")
"""The `GpuSummary` fields of NVML's figures."""
GPM_STATS: dict[str, tuple[str, ...]] = {
    "sm_active": ("mean", "p50", "p95"),
    "sm_occupancy": ("mean",),
    "tensor_active": ("mean", "p95"),
    "dram_bw": ("mean", "p95"),
}
"""Each GPM figure (`autotune.observe.gpm.GPM_METRICS` without `_pct`) and the statistics a summary keeps of it."""


def gpm_field(figure: str, stat: str) -> str:
    """`sm_active_mean`: the `GpuSummary` field of a GPM figure's statistic."""
    return f"{figure}_{stat}"


GPM_FIELDS = tuple(gpm_field(figure, stat) for figure, stats in GPM_STATS.items() for stat in stats)
"""The `GpuSummary` fields of NVML GPM's SM counters (each a metric `gpu_<field>`)."""
GPM_METRIC_PREFIXES = tuple(dict.fromkeys(GPU_PREFIX + figure.split("_")[0] + "_" for figure in GPM_STATS))
"""`gpu_sm_`, `gpu_tensor_`, `gpu_dram_`: the metrics of GPM figures."""


def gpu_metric(field: str) -> str:
    """`gpu_<field>`: a `GpuSummary` field as a metric."""
    return GPU_PREFIX + field


NVML_BUSY_METRIC = gpu_metric("util_mean")
SM_ACTIVE_METRIC = gpu_metric("sm_active_mean")
TENSOR_ACTIVE_METRIC = gpu_metric("tensor_active_mean")
DRAM_BW_METRIC = gpu_metric("dram_bw_mean")
GPU_MEMORY_METRIC = gpu_metric("mem_used_max_mib")
GPU_SAMPLES_METRIC = gpu_metric("samples")
GPM_AVAILABLE_METRIC = gpu_metric("gpm_available")
GPM_INTERVALS_METRIC = gpu_metric("gpm_intervals")


# Server CPU: the profile by process role (`autotune.observe.cpu.ServerCpuProfile`).
SERVER_CPU_PREFIX = "server_cpu_"
SERVER_CPU_TOTAL_METRIC = SERVER_CPU_PREFIX + "total_cores_mean"


def server_cpu_cores_mean(role: str) -> str:
    """`server_cpu_<role>_cores_mean`: the CPU cores a role's processes used together, mean over the window."""
    return f"{SERVER_CPU_PREFIX}{role}_cores_mean"


def server_cpu_busiest_process_cores(role: str) -> str:
    """`server_cpu_<role>_busiest_process_cores`: the mean cores of the role's busiest process."""
    return f"{SERVER_CPU_PREFIX}{role}_busiest_process_cores"


FRONTEND_METRIC = server_cpu_busiest_process_cores("api_server")
"""The busiest API server process's cores: at a full core, the frontend is the limit."""


# Prometheus: the server's `/metrics` over the window (`autotune.observe.prometheus.summarize_window`).
SERVER_PREFIX = "server_"


def server_metric(figure: str) -> str:
    """`server_<figure>`, the figure's characters outside [A-Za-z0-9_-.] replaced by `_` (an MLflow key)."""
    return SERVER_PREFIX + "".join(ch if ch.isalnum() or ch in "_-." else "_" for ch in figure)


# Stack profile: the reported window's (and the probe's, `peak_`) activity shares
# (`autotune.observe.stacks.activity`).
STACK_API_SERVER_EVENT_LOOP_BUSY = "stack_api_server_event_loop_busy"
STACK_API_SERVER_PREPROCESSING_BUSY = "stack_api_server_preprocessing_busy"


def stack_engine_core_share(activity: str) -> str:
    """`stack_engine_core_<activity>_share`: the model-runner thread's share of samples in one activity."""
    return f"stack_engine_core_{activity}_share"
