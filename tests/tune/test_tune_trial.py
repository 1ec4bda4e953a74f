"""The trial runner's outcomes with the server and benchmark replaced at their boundaries (no processes)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from autotune.bench.schemas import SLO, BenchResult, LoadSpec, RequestRecord, Summary
from autotune.config import EngineConfig, EngineKind, Provenance, load_tuned_config
from autotune.errors import AutotuneError
from autotune.space import TrialSettings
from autotune.tune import gpu_wait
from autotune.tune.failures import find_oom, root_cause
from autotune.tune.feasibility import check_feasibility
from autotune.tune.fidelity import Screening
from autotune.tune.trial import TrialRunner
from autotune.tune.trial_result import TrialOutcome
from autotune.tune.server_process import ServerStartError

from helpers.servers import MODEL_DIR as MODEL
LOAD = LoadSpec(mode="concurrency", concurrency=2, num_requests=4)


class FakeServer:
    def __init__(self, config_path: Path, *, alive_after_bench: bool = True, **_: Any) -> None:
        self.config_path = config_path
        self.base_url, self.pid, self.pgid = "http://127.0.0.1:9", 4242, 4242
        self.alive_after_bench = alive_after_bench
        self.benchmarked = False
        self.stopped = False

    def __enter__(self) -> FakeServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def alive(self) -> bool:
        return self.alive_after_bench or not self.benchmarked

    def log_tail(self, lines: int = 50) -> str:
        return "INFO ready\nERROR engine core died" if not self.alive() else "INFO ready"

    def stop(self, timeout_s: float = 30) -> None:
        self.stopped = True


def _runner(
    tmp_path: Path, *, server: Any, benchmark: Any, engine_kind: EngineKind = EngineKind.SIMULATED, **settings: Any
) -> TrialRunner:
    return TrialRunner(
        study_dir=tmp_path, engine_kind=engine_kind, workload={"name": "w"}, load=LOAD, slo=SLO(ttft_ms=100),
        settings=TrialSettings(**{"warmup_requests": 1, **settings}), server_factory=server, benchmark=benchmark,
    )


def _bench(servers: list[FakeServer], *, completed: int = 4) -> Any:
    async def benchmark(url: str, workload: Any, load: LoadSpec, slo: SLO, **_: Any) -> BenchResult:
        servers[-1].benchmarked = load.num_requests == LOAD.num_requests
        records = [RequestRecord(index=0, send_time_s=0.0, success=False, error="connection refused")]
        return BenchResult(
            url=url, workload={}, load=load, slo=slo, simulated=True, requests=[] if completed else records,
            summary=Summary(completed=completed, failed=load.num_requests - completed, throughput_rps=2.0),
        )

    return benchmark


def _factory(servers: list[FakeServer], **options: Any) -> Any:
    def make(config_path: Path, **kwargs: Any) -> FakeServer:
        servers.append(FakeServer(config_path, **options, **kwargs))
        return servers[-1]

    return make


def test_feasibility_rejects_weights_and_short_kv_cache() -> None:
    settings = TrialSettings()
    weights, _ = check_feasibility(EngineConfig(model=MODEL, max_model_len=8192), settings, gpu_memory_gib=8.0)
    assert weights is not None and "weights" in weights
    long_context = EngineConfig(model=MODEL, max_model_len=131072, gpu_memory_utilization=0.3)
    kv, estimate = check_feasibility(long_context, settings, gpu_memory_gib=79.19)
    assert kv is not None and "less than one max_model_len sequence (131072 tokens)" in kv
    assert estimate is not None and estimate.kv_capacity_tokens < 131072
    fits, _ = check_feasibility(EngineConfig(model=MODEL, max_model_len=8192), settings, gpu_memory_gib=79.19)
    assert fits is None
    assert check_feasibility(EngineConfig(model="hub/id"), settings, gpu_memory_gib=8.0) == (None, None)


def test_a_model_without_config_json_is_said_loudly_once_not_skipped_silently(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = TrialSettings(activation_reserve_gib=2.0)
    folder = tmp_path / "weights-only"
    folder.mkdir()
    with caplog.at_level("WARNING", logger="autotune.tune.feasibility"):
        for seqs in (8, 16, 32):  # three trials of the same model
            assert check_feasibility(EngineConfig(model=str(folder), max_num_seqs=seqs), settings, 80.0) == (None, None)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"NO MEMORY PRE-CHECK for model {folder}") and "config.json" in warnings[0]


def test_complete_trial_writes_what_it_served(tmp_path: Path) -> None:
    servers: list[FakeServer] = []
    runner = _runner(tmp_path, server=_factory(servers), benchmark=_bench(servers))
    engine = EngineConfig(model=MODEL, max_num_seqs=7)
    result = runner.run(3, engine, Provenance(study="s", trial_number=3))
    assert result.state is TrialOutcome.COMPLETE and result.summary is not None
    assert load_tuned_config(servers[0].config_path).engine_config == engine  # what is tuned is what is served
    assert BenchResult.model_validate_json(Path(result.result_path).read_text()).summary.throughput_rps == 2.0
    assert servers[0].stopped and result.timings.measure_s is not None and result.timings.warmup_s is not None
    assert (tmp_path / "trials" / "3" / "trial.json").is_file()


def test_a_run_of_several_windows_keeps_its_highest_throughput_window(tmp_path: Path) -> None:
    """slo_rate reports a window below saturation; the capacity probe (the peak) is kept beside it."""
    servers: list[FakeServer] = []
    plain = _bench(servers)

    async def windows(url: str, workload: Any, load: LoadSpec, slo: SLO, **kwargs: Any) -> BenchResult:
        result = await plain(url, workload, load, slo, **kwargs)
        probe = result.summary.model_copy(update={"throughput_rps": 57.7})
        reported = result.summary.model_copy(update={"throughput_rps": 49.1})
        return result.model_copy(update={"summary": reported, "sweep": [probe, reported]})

    result = _runner(tmp_path, server=_factory(servers), benchmark=windows).run(1, EngineConfig(model=MODEL), Provenance())
    assert result.summary is not None and result.summary.throughput_rps == 49.1
    assert result.peak_summary is not None and result.peak_summary.throughput_rps == 57.7
    single = _runner(tmp_path / "one", server=_factory(servers), benchmark=_bench(servers)).run(2, EngineConfig(model=MODEL), Provenance())
    assert single.peak_summary is None  # one window: nothing beside it


def test_infeasible_config_starts_no_server(tmp_path: Path) -> None:
    servers: list[FakeServer] = []
    runner = _runner(tmp_path, server=_factory(servers), benchmark=_bench(servers), gpu_memory_gib=8.0)
    result = runner.run(0, EngineConfig(model=MODEL, max_model_len=8192), Provenance())
    assert result.state is TrialOutcome.REJECTED and "weights" in (result.reason or "") and servers == []


def test_oom_at_start_is_named(tmp_path: Path) -> None:
    def crash(config_path: Path, **_: Any) -> Any:
        raise ServerStartError("crashed", "loading\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB", 1)

    result = _runner(tmp_path, server=crash, benchmark=_bench([])).run(0, EngineConfig(model=MODEL), Provenance())
    assert result.state is TrialOutcome.FAILED
    assert result.reason is not None and result.reason.startswith("out of GPU memory at start: torch.OutOfMemoryError")
    assert find_oom("all fine") is None


# The start that ran out of GPU memory on the H100 on 2026-12-05 (a KV cache of twice the GPU's memory asked for with
# kv_cache_memory_bytes; experiments/reliability/gpu-2026-12-05-h100/), lines of its server.log cut to 260 characters:
# the OOM is far above the tail, and the API server's rich traceback has a boxed `except CancelledError:` line.
VLLM_OOM_START = """\
(EngineCore pid=1702) INFO 12-05 14:38:53 [gpu_worker.py:429] Initial free memory 78.66 GiB, reserved 159.29 GiB memory for KV Cache as specified by kv_cache_memory_bytes config and skipped memory profiling. This does not respect the gpu_memory_utilization con
(EngineCore pid=1702) ERROR 12-05 14:38:53 [core.py:1231] EngineCore failed to start.
(EngineCore pid=1702) ERROR 12-05 14:38:53 [core.py:1231]     tensor = torch.zeros(
(EngineCore pid=1702) ERROR 12-05 14:38:53 [core.py:1231]              ^^^^^^^^^^^^
(EngineCore pid=1702) ERROR 12-05 14:38:53 [core.py:1231] torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 4.43 GiB. GPU 0 has a total capacity of 79.18 GiB of which 3.01 GiB is free. Including non-PyTorch memory, this process has 76.16 GiB memory
(EngineCore pid=1702)              ^^^^^^^^^^^^
(EngineCore pid=1702) torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 4.43 GiB. GPU 0 has a total capacity of 79.18 GiB of which 3.01 GiB is free. Including non-PyTorch memory, this process has 76.16 GiB memory in use. Of the allocated memory 75.
(APIServer pid=1627) ╭───────────────────────────────────────────────────────────────────────────────── Traceback (most recent call last) ──────────────────────────────────────────────────────────────────────────────────╮
(APIServer pid=1627) │ ❱ 118 │   │   │   return self._loop.run_until_complete(task)                                                                                                                                         │
(APIServer pid=1627) │   119 │   │   except exceptions.CancelledError:                                                                                                                                                      │
(APIServer pid=1627) │   120 │   │   │   if self._interrupt_count > 0:                                                                                                                                                      │
(APIServer pid=1627) │ ❱ 1272 │   │   │   raise RuntimeError(                                                                                                                                                               │
(APIServer pid=1627) │   1273 │   │   │   │   "Engine core initialization failed. "                                                                                                                                         │
(APIServer pid=1627) RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}
"""


def test_a_real_oom_start_is_named_from_the_whole_log_not_from_a_rich_traceback_line(tmp_path: Path) -> None:
    def crash(config_path: Path, *, log_path: Path, **_: Any) -> Any:
        log_path.write_text(VLLM_OOM_START)
        raise ServerStartError("crashed", "\n".join(VLLM_OOM_START.splitlines()[-4:]), 1)

    result = _runner(tmp_path, server=crash, benchmark=_bench([])).run(0, EngineConfig(model=MODEL), Provenance())
    assert result.state is TrialOutcome.FAILED
    assert result.reason is not None
    assert result.reason.startswith("out of GPU memory at start: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 4.43 GiB")
    assert "CancelledError" not in result.reason
    cause = root_cause(VLLM_OOM_START)  # what a reason without the OOM marker would say: not the boxed source line
    assert cause is not None and cause.startswith("torch.OutOfMemoryError: CUDA out of memory.")


def test_server_dying_mid_benchmark_fails_the_trial(tmp_path: Path) -> None:
    servers: list[FakeServer] = []
    runner = _runner(tmp_path, server=_factory(servers, alive_after_bench=False), benchmark=_bench(servers))
    result = runner.run(0, EngineConfig(model=MODEL), Provenance())
    assert result.state is TrialOutcome.FAILED
    assert result.reason == "server exited during the benchmark: ERROR engine core died"


def test_no_successful_request_fails_the_trial(tmp_path: Path) -> None:
    servers: list[FakeServer] = []
    runner = _runner(tmp_path, server=_factory(servers), benchmark=_bench(servers, completed=0))
    result = runner.run(0, EngineConfig(model=MODEL), Provenance())
    assert result.state is TrialOutcome.FAILED and "first error: connection refused" in (result.reason or "")


def test_hung_benchmark_is_cut_by_the_measure_timeout(tmp_path: Path) -> None:
    servers: list[FakeServer] = []

    async def hang(*args: Any, **kwargs: Any) -> BenchResult:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    runner = _runner(tmp_path, server=_factory(servers), benchmark=hang, measure_timeout_s=0.2, warmup_requests=0)
    result = runner.run(0, EngineConfig(model=MODEL), Provenance())
    assert result.state is TrialOutcome.FAILED and "did not finish within 0.2 s" in (result.reason or "")
    assert servers[0].stopped


@pytest.mark.parametrize(
    ("readings", "timeout_s", "released"),
    [([1000.0, 9000.0, 4000.0, 1200.0], 30.0, True), ([1000.0, 9000.0, 9000.0], 0.0, False), ([None], 30.0, None)],
)
def test_gpu_memory_release_is_polled_back_to_the_pre_trial_level(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, readings: list[float | None], timeout_s: float, released: bool | None
) -> None:
    queue = list(readings)
    def used() -> list[float] | None:  # one GPU's reading, as NVML gives it
        value = queue.pop(0) if len(queue) > 1 else queue[0]
        return None if value is None else [value]

    monkeypatch.setattr(gpu_wait, "gpu_memory_used_mib", used)
    monkeypatch.setattr(gpu_wait.time, "sleep", lambda s: None)  # NVML is faked: no real time passes
    servers: list[FakeServer] = []
    runner = _runner(tmp_path, server=_factory(servers), benchmark=_bench(servers), gpu_release_timeout_s=timeout_s)
    result = runner.run(0, EngineConfig(model=MODEL), Provenance())
    assert result.gpu_memory_released is released
    assert result.gpu_memory_before_mib == readings[0]
    assert result.gpu_memory_after_mib == (None if released is None else readings[-1])  # the release wait's last reading


# What vLLM 0.24 logged on the GPU host (experiments/h100-qwen3-vl-4b/study/h100-qwen3-vl-4b/trials/{0,3}/server.log), shortened.
VLLM_START_FAILURE = """\
(EngineCore pid=4013) ERROR 11-25 23:50:47 [core.py:1231] EngineCore failed to start.
(EngineCore pid=4013) ERROR 11-25 23:50:47 [core.py:1231] Traceback (most recent call last):
(EngineCore pid=4013) ERROR 11-25 23:50:47 [core.py:1231]     return out.pin_memory()
(EngineCore pid=4013) ERROR 11-25 23:50:47 [core.py:1231] RuntimeError: cannot pin 'CUDABFloat16Type' only dense CPU tensors can be pinned
(APIServer pid=3921) Traceback (most recent call last):
(APIServer pid=3921)   File "/opt/gpu-site/vllm/v1/engine/utils.py", line 1100, in wait_for_engine_startup
(APIServer pid=3921) RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}
"""


def test_a_start_failure_names_the_engines_root_cause_not_the_wrapper(tmp_path: Path) -> None:
    def crash(config_path: Path, *, log_path: Path, **_: Any) -> Any:
        log_path.write_text(VLLM_START_FAILURE)
        raise ServerStartError("crashed", VLLM_START_FAILURE.splitlines()[-1], 1)

    result = _runner(tmp_path, server=crash, benchmark=_bench([])).run(0, EngineConfig(model=MODEL), Provenance())
    assert result.state is TrialOutcome.FAILED
    assert result.reason == (
        "server crashed at start, exit code 1: RuntimeError: cannot pin 'CUDABFloat16Type' only dense CPU tensors can be pinned"
    )


def test_a_gpu_held_by_another_process_fails_as_the_environments_fault_without_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from autotune.tune import attrs

    frees = iter([0.07, 0.07, 0.5])
    monkeypatch.setattr(gpu_wait, "gpu_memory_free_fraction", lambda: [next(frees, 0.07)])
    monkeypatch.setattr(gpu_wait.time, "sleep", lambda _s: None)
    servers: list[FakeServer] = []
    vllm = EngineKind.VLLM
    runner = _runner(tmp_path, server=_factory(servers), benchmark=_bench(servers), engine_kind=vllm, gpu_release_timeout_s=0)
    result = runner.run(0, EngineConfig(model=MODEL, gpu_memory_utilization=0.9), Provenance())
    assert result.state is TrialOutcome.FAILED and servers == []  # no server was started into a busy GPU
    assert result.reason is not None and result.reason.startswith(attrs.GPU_BUSY)
    assert "only 7% of a GPU's memory is free" in result.reason and attrs.environmental_failure(result.reason)
    # memory freed while waiting: the trial goes ahead
    frees = iter([0.07, 0.95])
    monkeypatch.setattr(gpu_wait, "gpu_memory_free_fraction", lambda: [next(frees, 0.95)])
    waited = _runner(tmp_path, server=_factory(servers), benchmark=_bench(servers), engine_kind=vllm, gpu_release_timeout_s=60)
    assert waited.run(1, EngineConfig(model=MODEL), Provenance()).state is TrialOutcome.COMPLETE and len(servers) == 1
    # the simulated engine uses no GPU: a busy one does not hold its trials back
    monkeypatch.setattr(gpu_wait, "gpu_memory_free_fraction", lambda: [0.01])
    simulated = _runner(tmp_path, server=_factory(servers), benchmark=_bench(servers), gpu_release_timeout_s=0)
    assert simulated.run(2, EngineConfig(model=MODEL), Provenance()).state is TrialOutcome.COMPLETE and len(servers) == 2


def test_a_vllm_trials_server_starts_with_the_engines_start_time_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gpu_wait, "gpu_memory_free_fraction", lambda: [0.95])
    envs: list[dict[str, str] | None] = []
    servers: list[FakeServer] = []

    def server(config_path: Path, **kwargs: Any) -> FakeServer:
        envs.append(kwargs.get("env"))
        servers.append(FakeServer(config_path))
        return servers[-1]

    for number, kind in enumerate((EngineKind.VLLM, EngineKind.SIMULATED)):
        runner = _runner(tmp_path, server=server, benchmark=_bench(servers), engine_kind=kind)
        assert runner.run(number, EngineConfig(model=MODEL), Provenance()).state is TrialOutcome.COMPLETE
    # set when the server's interpreter starts, as `autotune serve` would (else it executes itself again to set it)
    assert envs[0] is not None and envs[0]["MALLOC_MMAP_THRESHOLD_"] == "131072"
    assert "MALLOC_MMAP_THRESHOLD_" not in (envs[1] or {})  # the simulated engine gets no allocator setting


# An engine core SIGKILLed while serving, as vLLM 0.24's API server logged it on an H100 (2026-12-07; the monitor's
# warning is vllm/v1/engine/core_client.py's; every request after it fails with the generic EngineDeadError). The
# start's ulimit warning quotes an exception that nothing raised: it is no root cause.
VLLM_ENGINE_DEATH = """\
(APIServer pid=812) WARNING 12-05 09:58:13 [system_utils.py:299] Found ulimit of 20000 and failed to automatically increase with error current limit exceeds maximum limit. This can cause fd limit errors like `OSError: [Errno 24] Too many open files`. Consider increasing with ulimit -n
(APIServer pid=812) INFO 12-05 10:00:01 [loggers.py:257] Engine 000: Avg prompt throughput: 9000.0 tokens/s
(APIServer pid=812) WARNING 12-05 10:00:02 [core_client.py:702] [shutdown] MPClient: engine core exited unexpectedly; starting cleanup
(APIServer pid=812) ERROR 12-05 10:00:02 [serving_chat.py:1400] Traceback (most recent call last):
(APIServer pid=812) ERROR 12-05 10:00:02 [serving_chat.py:1400] vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue. See stack trace (above) for the root cause.
(APIServer pid=812) INFO:     Shutting down
"""


@pytest.mark.parametrize("server_exits", [True, False])
def test_an_engine_core_dying_mid_benchmark_fails_the_trial_with_vllms_death_line(
    tmp_path: Path, server_exits: bool
) -> None:
    """The reason is vLLM's own line about the engine core, not the server log's last line ("Shutting down") nor the
    generic EngineDeadError; with VLLM_KEEP_ALIVE_ON_ENGINE_DEATH the API server outlives its engine, and the trial
    fails all the same."""
    servers: list[FakeServer] = []
    plain = _bench(servers, completed=3)

    async def engine_dies(url: str, workload: Any, load: LoadSpec, slo: SLO, **kwargs: Any) -> BenchResult:
        result = await plain(url, workload, load, slo, **kwargs)
        if load.num_requests == LOAD.num_requests:  # the measured window, not the warm-up
            (tmp_path / "trials" / "0" / "server.log").write_text(VLLM_ENGINE_DEATH)
        return result

    runner = _runner(tmp_path, server=_factory(servers, alive_after_bench=not server_exits), benchmark=engine_dies)
    result = runner.run(0, EngineConfig(model=MODEL), Provenance())
    assert result.state is TrialOutcome.FAILED
    death = "engine core died: [shutdown] MPClient: engine core exited unexpectedly; starting cleanup"
    where = "server exited during the benchmark" if server_exits else "engine core died during the benchmark"
    assert result.reason == f"{where}: {death}"


def test_a_benchmark_that_breaks_off_names_the_engine_death_vllm_logged(tmp_path: Path) -> None:
    servers: list[FakeServer] = []
    plain = _bench(servers)

    async def breaks_off(url: str, workload: Any, load: LoadSpec, slo: SLO, **kwargs: Any) -> BenchResult:
        if load.num_requests != LOAD.num_requests:  # the warm-up goes through
            return await plain(url, workload, load, slo, **kwargs)
        (tmp_path / "trials" / "0" / "server.log").write_text(VLLM_ENGINE_DEATH)
        raise AutotuneError("the client lost its connections")

    result = _runner(tmp_path, server=_factory(servers), benchmark=breaks_off).run(0, EngineConfig(model=MODEL), Provenance())
    assert result.state is TrialOutcome.FAILED
    assert result.reason == (
        "benchmark failed: AutotuneError: the client lost its connections; "
        "engine core died: [shutdown] MPClient: engine core exited unexpectedly; starting cleanup"
    )


def test_with_stack_profiling_the_start_is_profiled_and_never_taken_for_the_measured_window(tmp_path: Path) -> None:
    """A real `autotune serve` (simulated engine) started by the trial: its start, from the first import until
    /health answers, is recorded as the window `start`, closed; the measured windows are chosen without it."""
    from autotune.observe.stacks.activity import window_folders
    from autotune.observe.stacks.gate import START_WINDOW
    from autotune.observe.stacks.reader import summarize_stack_profile

    async def benchmark(url: str, workload: Any, load: LoadSpec, slo: SLO, **_: Any) -> BenchResult:
        return BenchResult(url=url, workload={}, load=load, slo=slo, simulated=True, requests=[],
                           summary=Summary(completed=load.num_requests, failed=0, throughput_rps=2.0))

    runner = TrialRunner(
        study_dir=tmp_path, engine_kind=EngineKind.SIMULATED, workload={"name": "w"}, load=LOAD, slo=SLO(ttft_ms=100),
        settings=TrialSettings(warmup_requests=1), benchmark=benchmark, stack_profile_hz=200,
    )
    result = runner.run(0, EngineConfig(model=MODEL), Provenance())
    assert result.state is TrialOutcome.COMPLETE, result.reason
    profile_dir = tmp_path / "trials" / "0" / "stack-profile"
    summary = summarize_stack_profile(profile_dir)
    [start] = [w for w in summary.windows if w.label == START_WINDOW]
    [server] = start.processes  # the simulated server is one process
    assert server.complete  # its file was closed once the server answered
    main = next(t for t in server.threads if t.name == "MainThread")
    assert main.samples > 10  # a start of about a second at 200 Hz, imports included
    stacks = next((profile_dir / START_WINDOW).glob("*.folded")).read_text()
    assert "launch.py:serve" in stacks and "_bootstrap" in stacks  # the server's start, imports included
    assert window_folders(profile_dir, None) == (None, None)  # no measured window: the start is not one


@pytest.mark.parametrize(
    ("from_screening", "screened", "bracket"),
    [
        (True, {"slo_rate_rps": 25.4, "slo_rate_failed_rps": 38.1, "slo_rate_censored": False}, (25.4, 38.1)),
        (False, {"slo_rate_rps": 25.4, "slo_rate_failed_rps": 38.1, "slo_rate_censored": False}, None),
        # nothing missed (censored): from the rate met up to 1.5x it
        (True, {"slo_rate_rps": 25.4, "slo_rate_failed_rps": None, "slo_rate_censored": True}, (25.4, 25.4 * 1.5)),
        # no bracket to start from: nothing met
        (True, {"slo_rate_rps": 0.0, "slo_rate_failed_rps": 10.0, "slo_rate_censored": False}, None),
    ],
)
def test_the_full_measurement_starts_from_the_screenings_bracket(
    tmp_path: Path, from_screening: bool, screened: dict[str, Any], bracket: tuple[float, float] | None
) -> None:
    """With `full_from_screening`, the full slo_rate measurement gets the screening's (met, missed) rates as its
    `slo_rate_bracket` (so it runs no capacity probe of its own), from a censored screening (met, 1.5 x met); without
    it, or when the screening met nothing, the space's load."""
    full = LoadSpec(mode="slo_rate", concurrency=8, duration_s=4)
    screening_load = full.model_copy(update={"slo_rate_window_s": 8.0})
    servers: list[FakeServer] = []
    loads: list[LoadSpec] = []

    async def benchmark(url: str, workload: Any, load: LoadSpec, slo: SLO, **_: Any) -> BenchResult:
        loads.append(load)
        summary = Summary(completed=4, failed=0, throughput_rps=2.0, **screened)
        return BenchResult(url=url, workload={}, load=load, slo=slo, simulated=True, summary=summary)

    runner = TrialRunner(
        study_dir=tmp_path, engine_kind=EngineKind.SIMULATED, workload={"name": "w"}, load=full, slo=SLO(ttft_ms=100),
        settings=TrialSettings(warmup_requests=0), server_factory=_factory(servers), benchmark=benchmark,
    )
    screening = Screening(load=screening_load, gate=lambda summary: None, full_from_screening=from_screening)
    result = runner.run(0, EngineConfig(model=MODEL), Provenance(), screening=screening)
    assert result.state is TrialOutcome.COMPLETE, result.reason
    assert loads[0] == screening_load
    assert loads[1] == (full if bracket is None else full.model_copy(update={"slo_rate_bracket": bracket}))
    assert result.full_measurement_bracket == bracket


@pytest.mark.parametrize(("screening_seed", "first_request"), [(0, 1234), (5, 0)])
def test_the_full_measurement_sends_none_of_the_screenings_requests(
    tmp_path: Path, screening_seed: int, first_request: int
) -> None:
    """The screening and the full measurement share the server: with the same seed the full measurement starts at the
    screening's `next_request` (on an H100 on 2026-12-07 its first window re-sent the screening's requests, 15-16%
    cache hits, and was thrown away); a screening of another seed used another block of requests."""
    full = LoadSpec(mode="slo_rate", concurrency=8, duration_s=4)
    screening_load = full.model_copy(update={"slo_rate_window_s": 8.0, "seed": screening_seed})
    servers: list[FakeServer] = []
    loads: list[LoadSpec] = []

    async def benchmark(url: str, workload: Any, load: LoadSpec, slo: SLO, **_: Any) -> BenchResult:
        loads.append(load)
        summary = Summary(completed=4, failed=0, throughput_rps=2.0, slo_rate_rps=25.4, slo_rate_censored=True)
        return BenchResult(url=url, workload={}, load=load, slo=slo, simulated=True, summary=summary,
                           next_request=load.first_request + 1234)

    runner = TrialRunner(
        study_dir=tmp_path, engine_kind=EngineKind.SIMULATED, workload={"name": "w"}, load=full, slo=SLO(ttft_ms=100),
        settings=TrialSettings(warmup_requests=0), server_factory=_factory(servers), benchmark=benchmark,
    )
    result = runner.run(0, EngineConfig(model=MODEL), Provenance(), screening=Screening(load=screening_load, gate=lambda s: None))
    assert result.state is TrialOutcome.COMPLETE, result.reason
    assert result.screening_next_request == 1234
    assert loads[1] == full.model_copy(update={"first_request": first_request})
    assert json.loads((tmp_path / "trials" / "0" / "trial.json").read_text())["screening_next_request"] == 1234


def test_a_benchmark_is_cut_short_once_its_server_has_exited(tmp_path: Path) -> None:
    """On an H100 on 2026-12-07 a trial whose engine core was killed 8 s into its 40 s window sent the other 32 s of
    requests to no server; the benchmark is now cancelled within a second of the server's exit."""
    servers: list[FakeServer] = []
    plain = _bench(servers)
    cancelled: list[bool] = []

    async def long_window(url: str, workload: Any, load: LoadSpec, slo: SLO, **kwargs: Any) -> BenchResult:
        result = await plain(url, workload, load, slo, **kwargs)  # marks the server benchmarked: it is gone now
        if load.num_requests != LOAD.num_requests:  # the warm-up goes through
            return result
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return result

    runner = _runner(tmp_path, server=_factory(servers, alive_after_bench=False), benchmark=long_window)
    started = time.monotonic()
    result = runner.run(0, EngineConfig(model=MODEL), Provenance())
    assert time.monotonic() - started < 15
    assert cancelled == [True]
    assert result.state is TrialOutcome.FAILED
    assert result.reason == "server exited during the benchmark: ERROR engine core died"
