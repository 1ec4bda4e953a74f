"""autotune.observe.names: the metric names are a contract (result JSON, Optuna attributes, MLflow keys, recorded
experiments). These are pinned byte for byte; the producers are checked to build exactly them."""

from __future__ import annotations

from autotune.bench.schemas import Summary
from autotune.observe import names
from autotune.observe.cpu import ROLES, RoleCpu, ServerCpuProfile
from autotune.observe.gpu import GpuSummary
from autotune.observe.stacks.activity import ACTIVITIES
from autotune.tune.metrics import peak_metrics, summary_metrics


def test_pinned_names() -> None:
    assert (names.NVML_BUSY_METRIC, names.SM_ACTIVE_METRIC) == ("gpu_util_mean", "gpu_sm_active_mean")
    assert (names.GPM_AVAILABLE_METRIC, names.GPM_INTERVALS_METRIC) == ("gpu_gpm_available", "gpu_gpm_intervals")
    assert names.GPM_FIELDS == ("sm_active_mean", "sm_active_p50", "sm_active_p95", "sm_occupancy_mean",
                                "tensor_active_mean", "tensor_active_p95", "dram_bw_mean", "dram_bw_p95")
    assert names.GPM_METRIC_PREFIXES == ("gpu_sm_", "gpu_tensor_", "gpu_dram_")
    assert names.SERVER_CPU_TOTAL_METRIC == "server_cpu_total_cores_mean"
    assert names.server_cpu_cores_mean("engine_core") == "server_cpu_engine_core_cores_mean"
    assert names.FRONTEND_METRIC == "server_cpu_api_server_busiest_process_cores"
    assert names.server_metric("kv_cache_usage_perc_max") == "server_kv_cache_usage_perc_max"
    assert names.server_metric("a:b c") == "server_a_b_c"
    assert names.stack_engine_core_share("vision_encoder") == "stack_engine_core_vision_encoder_share"
    assert names.STACK_API_SERVER_EVENT_LOOP_BUSY == "stack_api_server_event_loop_busy"
    assert names.STACK_API_SERVER_PREPROCESSING_BUSY == "stack_api_server_preprocessing_busy"
    assert names.peak_metric(names.FRONTEND_METRIC) == "peak_server_cpu_api_server_busiest_process_cores"
    assert names.metric_column(names.NVML_BUSY_METRIC) == "metric_gpu_util_mean"
    assert [names.stack_engine_core_share(a) for a in ACTIVITIES][:2] == [
        "stack_engine_core_idle_share", "stack_engine_core_scheduler_share"]


def test_gpu_fields_are_summary_fields() -> None:
    assert set(names.GPU_FIELDS) | set(names.GPM_FIELDS) <= set(GpuSummary.model_fields)


def test_summary_metrics_produce_the_pinned_names() -> None:
    role = RoleCpu(processes=1, cores_mean=1.0, cores_p95=1.0, cores_max=1.0, busiest_process_cores_mean=1.0, threads_max=1)
    cpu = ServerCpuProfile(root_pid=1, roles={r: role for r in ROLES}, total_cores_mean=2.0, total_cores_p95=2.0,
                           total_cores_max=2.0, top_processes=[], samples=3, window_s=1.0, interval_s=0.2,
                           affinity=None, host_cpus=4)
    gpu = GpuSummary(devices=["H100"], samples=3, util_mean=99.0, gpm_status="ok", gpm_intervals=2, sm_active_mean=70.0)
    summary = Summary(gpu=gpu, server_cpu=cpu, server={"kv_cache_usage_perc_max": 0.5})
    figures = summary_metrics(summary)
    expected = {"gpu_util_mean", "gpu_util_p50", "gpu_util_p95", "gpu_mem_used_max_mib", "gpu_power_mean_w",
                "gpu_sm_clock_mean_mhz", "gpu_sm_active_mean", "gpu_sm_active_p50", "gpu_sm_active_p95",
                "gpu_sm_occupancy_mean", "gpu_tensor_active_mean", "gpu_tensor_active_p95", "gpu_dram_bw_mean",
                "gpu_dram_bw_p95", "gpu_samples", "gpu_gpm_available", "gpu_gpm_intervals",
                "server_kv_cache_usage_perc_max", "server_cpu_total_cores_mean",
                "server_cpu_api_server_cores_mean", "server_cpu_api_server_busiest_process_cores",
                "server_cpu_engine_core_cores_mean", "server_cpu_engine_core_busiest_process_cores",
                "server_cpu_gpu_worker_cores_mean", "server_cpu_gpu_worker_busiest_process_cores",
                "server_cpu_other_cores_mean", "server_cpu_other_busiest_process_cores"}
    assert expected <= set(figures)
    assert {k for k in figures if k.startswith(("gpu_", "server_"))} == expected
    assert set(peak_metrics(summary)) == {"peak_throughput_rps", "peak_gpu_util_mean", "peak_gpu_sm_active_mean"} | {
        f"peak_{k}" for k in expected if k.startswith("server_cpu_")}
