"""Profile-guided trials: the defaults' CPU profile queues the one change it calls for, served as the defaults + it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers.tune import FakeRunner, space_from

from autotune.config import EngineConfig, Provenance
from autotune.observe.cpu import RoleCpu, ServerCpuProfile
from autotune.tune import attrs
from autotune.tune.guide import guidance_from_profile, guided_config
from autotune.tune.session import reopen_study
from autotune.tune.settings import TuneSettings
from autotune.tune.study import run_tuning
from autotune.tune.trial_result import TrialResult


def _space(quick_space_data: dict, **parameters: Any) -> Any:
    data = dict(quick_space_data)
    data["parameters"] = {"max_num_seqs": {"type": "categorical", "choices": [4, 8]}, **parameters}
    return space_from(data)


API_SERVERS = {"api_server_count": {"type": "categorical", "choices": [1, 2, 4, 6]}}


def test_a_saturated_frontend_calls_for_more_api_servers_in_the_spaces_own_terms(quick_space_data: dict) -> None:
    space = _space(quick_space_data, **API_SERVERS)
    (guidance,) = guidance_from_profile(space, {"server_cpu_api_server_busiest_process_cores": 1.01})
    assert guidance.overrides == {"api_server_count": 4} and "1.01 cores" in guidance.why
    assert guidance_from_profile(space, {"server_cpu_api_server_busiest_process_cores": 0.5}) == []
    assert guidance_from_profile(space, {}) == []  # no profile (simulated engine, no pid): nothing guessed
    # the space does not tune the API servers: the tuner does not step outside it
    assert guidance_from_profile(_space(quick_space_data), {"server_cpu_api_server_busiest_process_cores": 1.0}) == []
    capped = _space(quick_space_data, api_server_count={"type": "categorical", "choices": [1, 2]})
    assert guidance_from_profile(capped, {"server_cpu_api_server_busiest_process_cores": 1.0})[0].overrides == {"api_server_count": 2}


def test_the_capacity_probe_shows_a_frontend_the_reported_window_hides(quick_space_data: dict) -> None:
    """2026-11-26: the defaults' API server ran at 1.06 cores in the capacity probe, 0.85 at the SLO rate reported."""
    space = _space(quick_space_data, **API_SERVERS)
    readings = {"server_cpu_api_server_busiest_process_cores": 0.85, "peak_server_cpu_api_server_busiest_process_cores": 1.06}
    (guidance,) = guidance_from_profile(space, readings)
    assert guidance.overrides == {"api_server_count": 4} and "1.06 cores" in guidance.why
    assert guidance_from_profile(space, {**readings, "peak_server_cpu_api_server_busiest_process_cores": 0.5}) == []


def test_trial_metrics_add_the_peak_window_only_when_there_was_one() -> None:
    from autotune.bench.schemas import Summary
    from autotune.tune.metrics import trial_metrics

    role = RoleCpu(processes=1, cores_mean=1.06, cores_p95=1.1, cores_max=1.1, busiest_process_cores_mean=1.06, threads_max=4)
    profile = ServerCpuProfile(root_pid=1, roles={"api_server": role}, total_cores_mean=4.9, total_cores_p95=5.0,
                               total_cores_max=5.0, samples=10, window_s=2.0, interval_s=0.2, host_cpus=16,
                               top_processes=[], affinity=None)
    reported = Summary(completed=10, failed=0, duration_s=1.0, throughput_rps=49.1)
    peak = reported.model_copy(update={"throughput_rps": 57.7, "server_cpu": profile})
    figures = trial_metrics(reported, peak)
    assert figures["throughput_rps"] == 49.1 and figures["peak_throughput_rps"] == 57.7
    assert figures["peak_server_cpu_api_server_busiest_process_cores"] == 1.06
    assert "peak_ttft_ms_p99" not in figures  # latency comes from the reported window only
    assert not any(key.startswith("peak_") for key in trial_metrics(reported, None))


class SaturatedFrontendRunner(FakeRunner):
    """The fake runner, with a CPU profile: one API server saturated unless there are several."""

    def run(self, number: int, engine: EngineConfig, provenance: Provenance) -> TrialResult:
        result = super().run(number, engine, provenance)
        servers = engine.api_server_count or 1
        if result.summary is not None:
            per_process = min(1.0, 1.6 / servers)
            role = RoleCpu(processes=servers, cores_mean=per_process * servers, cores_p95=1.0, cores_max=1.0,
                           busiest_process_cores_mean=per_process, threads_max=4)
            profile = ServerCpuProfile(root_pid=1, roles={"api_server": role}, total_cores_mean=role.cores_mean,
                                       total_cores_p95=1.0, total_cores_max=1.0, samples=10, window_s=2.0,
                                       interval_s=0.2, host_cpus=2, top_processes=[], affinity=None)
            result.summary = result.summary.model_copy(update={"server_cpu": profile})
        return result


def test_the_defaults_trial_queues_a_guided_trial_served_as_defaults_plus_the_change(
    tmp_path: Path, quick_space_data: dict
) -> None:
    space = _space(quick_space_data, **API_SERVERS)
    settings = TuneSettings(experiments_dir=tmp_path, n_trials=2, mlflow=False)
    run_tuning(space, settings, runner_factory=SaturatedFrontendRunner)
    defaults, guided = reopen_study(space.name, experiments_dir=tmp_path, mlflow=False).study.trials[:2]
    assert defaults.user_attrs[attrs.CONFIG_KIND] == attrs.VLLM_DEFAULTS
    assert guided.user_attrs[attrs.CONFIG_KIND] == attrs.GUIDED and guided.params == {}
    assert guided.user_attrs[attrs.GUIDED_OVERRIDES] == {"api_server_count": 4}
    served = FakeRunner.calls[1]
    assert served == space.defaults_config().model_copy(update={"api_server_count": 4})
    assert served == guided_config(space, {"api_server_count": 4})
    # a resumed study does not queue the same guided trial twice
    run_tuning(space, TuneSettings(experiments_dir=tmp_path, n_trials=1, mlflow=False), runner_factory=SaturatedFrontendRunner)
    trials = reopen_study(space.name, experiments_dir=tmp_path, mlflow=False).study.trials
    assert sum(t.user_attrs.get(attrs.CONFIG_KIND) == attrs.GUIDED for t in trials) == 1


def test_a_guided_change_that_breaks_the_config_is_refused_with_its_reason(quick_space_data: dict) -> None:
    from autotune.space import InvalidTrialConfig

    with pytest.raises(InvalidTrialConfig, match="guided config"):
        guided_config(_space(quick_space_data, **API_SERVERS), {"api_server_count": 0})


ENCODER_GRAPHS = {"extra_engine_args.compilation_config.cudagraph_mm_encoder": {"type": "categorical", "choices": [False, True]}}
# the defaults' engine core on 2026-11-26b (trial 8's profile at its reported rate): never idle, 25% in the encoder
BUSY_ENCODER = {"stack_engine_core_idle_share": 0.01, "stack_engine_core_vision_encoder_share": 0.25}


def test_an_engine_core_busy_in_the_vision_encoder_calls_for_encoder_cuda_graphs(quick_space_data: dict) -> None:
    space = _space(quick_space_data, **ENCODER_GRAPHS)
    (guidance,) = guidance_from_profile(space, BUSY_ENCODER)
    assert guidance.overrides == {"extra_engine_args.compilation_config.cudagraph_mm_encoder": True}
    assert "idle in 1%" in guidance.why and "vision encoder in 25%" in guidance.why
    config = guided_config(space, guidance.overrides)
    args = config.to_vllm_cli_args()
    assert args[args.index("--compilation-config") + 1] == '{"cudagraph_mm_encoder": true}'
    # an engine core that waits for work, or spends little in the encoder: no guess
    assert guidance_from_profile(space, {**BUSY_ENCODER, "stack_engine_core_idle_share": 0.3}) == []
    assert guidance_from_profile(space, {**BUSY_ENCODER, "stack_engine_core_vision_encoder_share": 0.05}) == []
    assert guidance_from_profile(space, {}) == []  # no stack profile: nothing
    # only the probe shows it: still read
    probe = {f"peak_{k}": v for k, v in BUSY_ENCODER.items()}
    assert len(guidance_from_profile(space, probe)) == 1
    # a space without the encoder parameter (or one whose int choices merely equal True) is not stepped out of
    assert guidance_from_profile(_space(quick_space_data, **API_SERVERS), BUSY_ENCODER) == []
    ints = {"extra_engine_args.compilation_config.cudagraph_mm_encoder": {"type": "categorical", "choices": [0, 1]}}
    assert guidance_from_profile(_space(quick_space_data, **ints), BUSY_ENCODER) == []


ENGINES = {"engines_per_gpu": {"type": "categorical", "choices": [1, 2, 3]}}


def test_a_busy_engine_core_calls_for_a_second_engine_on_the_gpu(quick_space_data: dict) -> None:
    space = _space(quick_space_data, **ENGINES, **ENCODER_GRAPHS)
    found = {tuple(g.overrides): g for g in guidance_from_profile(space, BUSY_ENCODER)}
    assert set(found) == {("engines_per_gpu",), ("extra_engine_args.compilation_config.cudagraph_mm_encoder",)}
    second = found[("engines_per_gpu",)]
    assert second.overrides == {"engines_per_gpu": 2} and "idle in 1%" in second.why
    config = guided_config(space, second.overrides)
    assert config.engines_per_gpu == 2 and config.vllm_data_parallel_size == 2
    # busy but not in the encoder: the second engine still applies, the encoder graphs do not
    (only,) = guidance_from_profile(space, {**BUSY_ENCODER, "stack_engine_core_vision_encoder_share": 0.05})
    assert only.overrides == {"engines_per_gpu": 2}
    # an engine core that waits for work: no second engine
    assert guidance_from_profile(space, {**BUSY_ENCODER, "stack_engine_core_idle_share": 0.3}) == []
    # a space without the value 2 is not stepped out of
    assert guidance_from_profile(_space(quick_space_data, engines_per_gpu={"type": "categorical", "choices": [1, 3]}), BUSY_ENCODER) == []


def _summary_with_gpu(**gpu: Any) -> Any:
    from autotune.bench.schemas import Summary
    from autotune.observe.gpu import GpuSummary

    return Summary(completed=10, failed=0, duration_s=1.0, throughput_rps=40.0, gpu=GpuSummary(devices=["H200"], samples=10, **gpu))


FRONTEND_BOUND = {"server_cpu_api_server_busiest_process_cores": 1.01}


def test_the_guide_reads_sm_activity_not_nvmls_busy_flag(quick_space_data: dict) -> None:
    """An H200 serving 80 req/s: NVML busy 99.9%, SM active 70%. NVML's flag would call the GPU saturated."""
    from autotune.tune.metrics import summary_metrics

    space = _space(quick_space_data, **API_SERVERS, **ENCODER_GRAPHS)
    room = summary_metrics(_summary_with_gpu(util_mean=99.0, gpm_status="ok", gpm_intervals=10, sm_active_mean=60.0))
    found = guidance_from_profile(space, {**room, **FRONTEND_BOUND, **BUSY_ENCODER})
    assert {tuple(g.overrides) for g in found} == {("api_server_count",), ("extra_engine_args.compilation_config.cudagraph_mm_encoder",)}
    assert all("SM active (GPM) 60%" in g.why for g in found)
    # the SMs saturated (in the capacity probe): the GPU is the limit, no CPU-side lever is queued
    assert guidance_from_profile(space, {**room, **FRONTEND_BOUND, **BUSY_ENCODER, "peak_gpu_sm_active_mean": 95.0}) == []
    saturated = summary_metrics(_summary_with_gpu(util_mean=99.0, gpm_status="ok", gpm_intervals=10, sm_active_mean=92.0))
    assert guidance_from_profile(space, {**saturated, **FRONTEND_BOUND}) == []


def test_without_gpm_the_guide_falls_back_to_nvml_and_says_so(quick_space_data: dict) -> None:
    from autotune.tune.metrics import summary_metrics

    space = _space(quick_space_data, **API_SERVERS)
    no_gpm = summary_metrics(_summary_with_gpu(util_mean=99.0, gpm_status="unavailable: GPU 0 does not support GPM"))
    assert no_gpm["gpu_gpm_available"] == 0.0 and no_gpm["gpu_sm_active_mean"] is None
    (guidance,) = guidance_from_profile(space, {**no_gpm, **FRONTEND_BOUND})  # 99% busy cannot show saturation
    assert "NVML busy 99%" in guidance.why and "GPM unavailable" in guidance.why
    (plain,) = guidance_from_profile(space, FRONTEND_BOUND)  # no GPU figures (simulated engine): as before
    assert plain.why.endswith("api_server_count 1 -> 4")


def test_a_saturated_frontend_also_calls_for_streaming_tokens_in_chunks_where_the_space_tunes_it(
    quick_space_data: dict,
) -> None:
    """vLLM 0.24's stream_interval: fewer, larger chunks for the API server to send; one trial of its own."""
    space = _space(quick_space_data, **API_SERVERS,
                   **{"extra_engine_args.stream_interval": {"type": "categorical", "choices": [1, 4, 16]}})
    found = guidance_from_profile(space, {"server_cpu_api_server_busiest_process_cores": 1.01})
    assert [g.overrides for g in found] == [{"api_server_count": 4}, {"extra_engine_args.stream_interval": 4}]
    assert "stream_interval 1 -> 4" in found[1].why
    served = guided_config(space, found[1].overrides)
    assert served.extra_engine_args["stream_interval"] == 4 and "--stream-interval" in served.to_vllm_cli_args()
    assert guidance_from_profile(space, {"server_cpu_api_server_busiest_process_cores": 0.5}) == []
