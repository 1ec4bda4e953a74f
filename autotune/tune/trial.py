"""One trial: EngineConfig -> feasibility check -> config.yaml -> `autotune serve` -> warm-up -> benchmark -> stop.

What is tuned is what is served: the trial writes the TunedConfig that `autotune serve --config` loads,
and starts exactly that. Every way a trial can go wrong (infeasible config, server crash, OOM, start-up
timeout, hang or stop mid-benchmark) becomes a `TrialResult` with a state and a reason; nothing here
raises for a bad config. Files land in `<study_dir>/trials/<number>/`:
config.yaml, server.log, result.json (BenchResult), trial.json (TrialResult); screening.json (BenchResult) when
the trial is screened first (autotune.tune.fidelity): a gate then decides whether it is measured in full or PRUNED.
config.yaml keeps `${VAR}` env placeholders; the server expands them from the environment it inherits.
A vLLM server gets VLLM_CACHE_ROOT (`compile_cache_root`, one folder for every trial: compiled graphs are loaded,
not compiled again) unless its config's env sets it; its start is split into phases from its log (start_phases).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from autotune.bench.schemas import SLO, BenchResult, LoadSpec, Summary
from autotune.config import EngineConfig, EngineKind, Provenance, TunedConfig
from autotune.errors import AutotuneError, ConfigError
from autotune.memory_model import MemoryEstimate, ModelInfo, estimate_memory
from autotune.observe.gpu import gpu_memory_free_fraction, gpu_total_memory_gib
from autotune.space import TrialSettings, config_hash
from autotune.tune import attrs
from autotune.tune.failures import failure_summary, find_oom, last_line
from autotune.tune.fidelity import Screening
from autotune.tune.preflight import min_free_gib
from autotune.tune.start_phases import StartPhases, start_phases_of_file
from autotune.redact import hide_secret_env, missing_env_placeholders
from autotune.tune.stops import check_free_space, out_of_space, out_of_space_error

log = logging.getLogger(__name__)


class TrialOutcome(StrEnum):
    COMPLETE = "complete"
    FAILED = "failed"
    REJECTED = "rejected"
    PRUNED = "pruned"  # served and screened, then stopped: its screening value cannot reach the best


class TrialTimings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    startup_s: float | None = None
    warmup_s: float | None = None
    screening_s: float | None = None
    measure_s: float | None = None
    stop_s: float | None = None
    total_s: float = 0.0


class TrialResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: int
    state: TrialOutcome
    reason: str | None = None
    engine: EngineKind
    simulated: bool
    config_hash: str
    trial_dir: str
    config_path: str | None = None
    result_path: str | None = None
    log_path: str | None = None
    log_tail: str | None = None
    summary: Summary | None = None
    peak_summary: Summary | None = Field(
        default=None,
        description="The window of highest throughput when the run had several (slo_rate's capacity probe, a sweep's "
        "top): where a saturated process shows, unlike the reported window below saturation",
    )
    stack_metrics: dict[str, float] = Field(
        default_factory=dict,
        description="From the server's stack profile (--stack-profile-hz): where the engine core's main thread and the "
        "API servers spent the reported window (`stack_*`) and the capacity probe (`peak_stack_*`)",
    )
    memory: MemoryEstimate | None = None
    gpu_memory_released: bool | None = Field(default=None, description="None: not checked (no NVML)")
    timings: TrialTimings = Field(default_factory=TrialTimings)
    start_phases: StartPhases | None = Field(default=None, description="The start's phases from the server log")
    compile_cache_root: str | None = Field(default=None, description="VLLM_CACHE_ROOT given to the server")
    screening_summary: Summary | None = Field(default=None, description="The screening measurement (fidelity)")
    server_cpus: list[int] | None = Field(default=None, description="CPU cores the server was pinned to (None: not pinned)")
    client_cpus: list[int] | None = Field(default=None, description="CPU cores the load generator was pinned to")


class ServerHandle(Protocol):
    """What a trial needs of a running server (serving.process.ServerProcess)."""

    base_url: str
    pid: int
    pgid: int

    def alive(self) -> bool: ...
    def log_tail(self, lines: int = 50) -> str: ...
    def stop(self, timeout_s: float = 30) -> Any: ...


class TrialObserver(Protocol):
    def server_started(self, number: int, server: ServerHandle) -> None: ...
    def phase(self, number: int, name: str) -> None: ...


class _NullObserver:
    def server_started(self, number: int, server: ServerHandle) -> None:
        pass

    def phase(self, number: int, name: str) -> None:
        pass


# The benchmark entry point: (url, workload, load, slo, model=..., telemetry=...) -> BenchResult (async).
BenchmarkFunc = Callable[..., Any]


def _default_benchmark() -> BenchmarkFunc:
    from autotune.bench.runner import run_benchmark

    return run_benchmark


def check_feasibility(
    engine: EngineConfig, settings: TrialSettings, gpu_memory_gib: float | None
) -> tuple[str | None, MemoryEstimate | None]:
    """(reason it cannot start, estimate) before any server starts; (None, None) when it cannot be judged."""
    if gpu_memory_gib is None:
        return None, None
    try:
        model = ModelInfo.from_model_dir(engine.model)
    except ConfigError as exc:
        _warn_no_memory_check(engine.model, exc)
        return None, None
    estimate = estimate_memory(engine, model, gpu_memory_gib, settings.activation_reserve_gib)
    utilization = engine.effective_gpu_memory_utilization
    budget_gib = gpu_memory_gib * engine.utilization_per_engine
    if estimate.weights_gib + settings.activation_reserve_gib > budget_gib:
        share = f" / {engine.engines_per_gpu} engines" if engine.engines_per_gpu > 1 else ""
        return (
            f"infeasible: weights ({estimate.weights_gib:.1f} GiB) plus activation reserve "
            f"({settings.activation_reserve_gib:.1f} GiB) exceed gpu_memory_utilization {utilization} "
            f"x {gpu_memory_gib:.1f} GiB{share} = {budget_gib:.1f} GiB",
            estimate,
        )
    max_model_len = engine.max_model_len or model.max_position_embeddings
    if estimate.kv_capacity_tokens < max_model_len:
        return (
            f"infeasible: the KV cache would hold {estimate.kv_capacity_tokens} tokens, less than one "
            f"max_model_len sequence ({max_model_len} tokens)",
            estimate,
        )
    return None, estimate


_WARNED_NO_MEMORY_CHECK: set[str] = set()


def _warn_no_memory_check(model: str, reason: ConfigError) -> None:
    """Once per model and process: without its config.json no trial of it is checked before its server starts."""
    if model in _WARNED_NO_MEMORY_CHECK:
        return
    _WARNED_NO_MEMORY_CHECK.add(model)
    log.warning(
        "NO MEMORY PRE-CHECK for model %s: %s. Configs whose weights or KV cache do not fit the GPU will start a "
        "server and fail there instead of being rejected up front.", model, reason,
    )


def _gpu_memory_used_mib() -> float | None:
    from autotune.observe.gpu import gpu_memory_used_mib

    used = gpu_memory_used_mib()
    return None if used is None else float(sum(used))


class TrialRunner:
    """Runs one EngineConfig end to end on loopback; `run` always returns a TrialResult."""

    def __init__(
        self,
        *,
        study_dir: Path,
        engine_kind: EngineKind,
        workload: Any,
        load: LoadSpec,
        slo: SLO,
        settings: TrialSettings,
        observer: TrialObserver | None = None,
        benchmark: BenchmarkFunc | None = None,
        server_factory: Callable[..., Any] | None = None,
        server_cpus: Sequence[int] | None = None,
        stack_profile_hz: float | None = None,
        compile_cache_root: Path | None = None,
    ) -> None:
        self.study_dir = study_dir
        self.compile_cache_root = compile_cache_root
        self.stack_profile_hz = stack_profile_hz
        self.server_cpus = sorted(set(server_cpus)) if server_cpus else None
        self.engine_kind = engine_kind
        self.workload = workload
        self.load = load
        self.slo = slo
        self.settings = settings
        self.observer = observer or _NullObserver()
        self._benchmark = benchmark
        self._server_factory = server_factory
        self._gpu_memory_gib = settings.gpu_memory_gib if settings.gpu_memory_gib is not None else gpu_total_memory_gib()

    def trial_dir(self, number: int) -> Path:
        return self.study_dir / "trials" / str(number)

    def run(
        self, number: int, engine: EngineConfig, provenance: Provenance, *, screening: Screening | None = None
    ) -> TrialResult:
        """Serve and measure `engine`; with `screening`, measure its load first and stop there if its gate says so.

        Raises `OutOfSpaceError` (a study stop, not the trial's failure) when the study folder's disk is below
        AUTOTUNE_MIN_FREE_GIB before the trial, or a write under it fails for space."""
        check_free_space(self.study_dir, min_free_gib())
        try:
            return self._run(number, engine, provenance, screening)
        except OSError as exc:
            if not out_of_space(exc):
                raise
            raise out_of_space_error(self.study_dir, exc, writing=exc.filename or f"trials/{number}/") from None

    def _run(self, number: int, engine: EngineConfig, provenance: Provenance, screening: Screening | None) -> TrialResult:
        started = time.monotonic()
        folder = self.trial_dir(number)
        if folder.exists():  # a study recreated under the same name: never mix old files in
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        result = TrialResult(
            number=number,
            state=TrialOutcome.COMPLETE,
            engine=self.engine_kind,
            simulated=self.engine_kind is EngineKind.SIMULATED,
            config_hash=config_hash(engine),
            trial_dir=str(folder),
            server_cpus=self.server_cpus,
            client_cpus=self.load.client_cpus,
        )
        reason, estimate = check_feasibility(engine, self.settings, self._gpu_memory_gib)
        result.memory = estimate
        if reason is not None:
            result.state, result.reason = TrialOutcome.REJECTED, reason
        else:
            self._serve_and_measure(number, engine, provenance, folder, result, screening)
        result.timings.total_s = round(time.monotonic() - started, 3)
        (folder / "trial.json").write_text(result.model_dump_json(indent=2))
        log.info("trial %d %s%s", number, result.state, f": {result.reason}" if result.reason else "")
        return result

    def _serve_and_measure(
        self, number: int, engine: EngineConfig, provenance: Provenance, folder: Path, result: TrialResult,
        screening: Screening | None = None,
    ) -> None:
        from serving.process import ServerProcess, ServerStartError

        missing = missing_env_placeholders(engine.env, os.environ)
        if missing:
            result.state = TrialOutcome.FAILED
            result.reason = f"engine env: {', '.join(missing)} not set in the tuner's environment"
            return
        # A literal secret (a space stored before placeholders) goes to the server's environment, not the file.
        file_env, secret_env = hide_secret_env(engine.env)
        written = engine.model_copy(update={"env": file_env}) if secret_env else engine
        tuned = TunedConfig(engine=self.engine_kind, engine_config=written, provenance=provenance)
        config_path = tuned.write(folder / "config.yaml")
        log_path = folder / "server.log"
        result.config_path, result.log_path = str(config_path), str(log_path)
        busy = self._wait_for_free_gpu(engine) if self.engine_kind is EngineKind.VLLM else None  # simulated: no GPU
        if busy is not None:
            result.state, result.reason = TrialOutcome.FAILED, busy
            return
        server_env = {**secret_env, **self._stack_profile_env(folder), **self._compile_cache_env(engine, result)}
        before_mib = _gpu_memory_used_mib()
        factory = self._server_factory or ServerProcess
        self.observer.phase(number, "starting")
        t0 = time.monotonic()
        started_at, ready_at = datetime.now(), None  # local wall clock, as the server log's stamps
        try:
            with factory(
                config_path,
                engine=self.engine_kind.value,
                log_path=log_path,
                startup_timeout_s=self.settings.startup_timeout_s,
                **({"env": server_env} if server_env else {}),
                **({"cpus": self.server_cpus} if self.server_cpus else {}),
            ) as server:
                result.timings.startup_s = round(time.monotonic() - t0, 3)
                ready_at = datetime.now()
                self.observer.server_started(number, server)
                self._measure(number, engine, server, folder, result, screening)
                result.log_tail = server.log_tail(lines=50)
                self.observer.phase(number, "stopping")
                t_stop = time.monotonic()
                server.stop(timeout_s=self.settings.stop_timeout_s)
                result.timings.stop_s = round(time.monotonic() - t_stop, 3)
        except ServerStartError as exc:
            result.timings.startup_s = round(time.monotonic() - t0, 3)
            result.log_tail = exc.log_tail
            oom = find_oom(exc.log_tail)
            code = f", exit code {exc.exit_code}" if getattr(exc, "exit_code", None) is not None else ""
            what = "timed out at start" if exc.reason == "timeout" else f"crashed at start{code}"
            result.state = TrialOutcome.FAILED
            cause = failure_summary(_read_log(log_path) or exc.log_tail)
            result.reason = f"out of GPU memory at start: {oom}" if oom else f"server {what}: {cause}"
        if result.state is TrialOutcome.FAILED and result.reason and "out of" not in result.reason:
            oom = find_oom(result.log_tail)
            if oom:
                result.reason = f"out of GPU memory: {oom}"
        result.start_phases = start_phases_of_file(log_path, started_at=started_at, ready_at=ready_at)
        result.gpu_memory_released = self._wait_gpu_release(before_mib)

    def _compile_cache_env(self, engine: EngineConfig, result: TrialResult) -> dict[str, str]:
        """VLLM_CACHE_ROOT for a vLLM server (the config's own env wins: vLLM's launcher exports it last)."""
        from autotune.tune.compile_cache import CACHE_ROOT_ENV

        if self.engine_kind is not EngineKind.VLLM or self.compile_cache_root is None:
            return {}
        root = engine.env.get(CACHE_ROOT_ENV) or str(self.compile_cache_root)
        result.compile_cache_root = root
        return {CACHE_ROOT_ENV: str(self.compile_cache_root)}

    def _stack_dir(self, folder: Path) -> Path:
        return folder / "stack-profile"

    def _stack_profile_env(self, folder: Path) -> dict[str, str]:
        """The server's environment for `autotune.observe.stacks.profiler` (every process: the autostart folder first on PYTHONPATH)."""
        if not self.stack_profile_hz:
            return {}
        from autotune.observe.stacks.profiler import DIR_ENV, HZ_ENV
        from serving.autostart import __file__ as autostart_init

        paths = [str(Path(autostart_init).parent), *filter(None, [os.environ.get("PYTHONPATH")])]
        return {DIR_ENV: str(self._stack_dir(folder).resolve()), HZ_ENV: f"{self.stack_profile_hz:g}", "PYTHONPATH": os.pathsep.join(paths)}

    def _write_stack_profile(self, folder: Path, reported_rate_rps: float | None) -> dict[str, float]:
        """stack_profile.json (per window, process and thread) and the flat figures of the reported window and probe."""
        from autotune.observe.stacks.activity import stack_metrics
        from autotune.observe.stacks.reader import summarize_stack_profile

        directory = self._stack_dir(folder)
        if not directory.is_dir():
            return {}
        summary = summarize_stack_profile(directory)
        (folder / "stack_profile.json").write_text(summary.model_dump_json(indent=2))
        return stack_metrics(directory, reported_rate_rps)

    def _measure(
        self, number: int, engine: EngineConfig, server: ServerHandle, folder: Path, result: TrialResult,
        screening: Screening | None = None,
    ) -> None:
        benchmark = self._benchmark or _default_benchmark()
        model = engine.name_for_clients
        try:
            if self.settings.warmup_requests > 0:
                self.observer.phase(number, "warm-up")
                t_warm = time.monotonic()
                warm = self.load.warmup(self.settings.warmup_requests)
                asyncio.run(
                    asyncio.wait_for(
                        benchmark(server.base_url, self.workload, warm, self.slo, model=model, telemetry=False),
                        timeout=self.settings.measure_timeout_s,
                    )
                )
                result.timings.warmup_s = round(time.monotonic() - t_warm, 3)
            if not server.alive():
                result.state = TrialOutcome.FAILED
                result.reason = f"server exited during warm-up: {last_line(server.log_tail(lines=20))}"
                return
            if screening is not None and self._screen(number, engine, server, folder, result, screening):
                return
            self.observer.phase(number, "measuring")
            t_measure = time.monotonic()
            bench: BenchResult = asyncio.run(
                asyncio.wait_for(
                    benchmark(
                        server.base_url, self.workload, self.load, self.slo, model=model, telemetry=True,
                        server_pid=server.pid,
                        **({"stack_profile_dir": self._stack_dir(folder)} if self.stack_profile_hz else {}),
                    ),
                    timeout=self.settings.measure_timeout_s,
                )
            )
            result.timings.measure_s = round(time.monotonic() - t_measure, 3)
        except TimeoutError:
            result.state = TrialOutcome.FAILED
            result.reason = (
                f"benchmark did not finish within {self.settings.measure_timeout_s:g} s (server stalled or hung)"
            )
            return
        except (AutotuneError, OSError) as exc:
            result.state = TrialOutcome.FAILED
            result.reason = f"benchmark failed: {type(exc).__name__}: {exc}"[:500]
            return
        result_path = folder / "result.json"
        result_path.write_text(bench.model_dump_json(indent=2))
        if self.stack_profile_hz:
            result.stack_metrics = self._write_stack_profile(folder, bench.summary.slo_rate_rps)
        result.result_path = str(result_path)
        result.summary = bench.summary
        if len(bench.sweep) > 1:
            result.peak_summary = max(bench.sweep, key=lambda window: window.throughput_rps or 0.0)
        result.simulated = result.simulated or bench.simulated
        summary = bench.summary
        if not server.alive():
            result.state = TrialOutcome.FAILED
            result.reason = f"server exited during the benchmark: {last_line(server.log_tail(lines=20))}"
        elif summary.completed == 0:
            first_error = next((r.error for r in bench.requests if r.error), None)
            result.state = TrialOutcome.FAILED
            result.reason = f"no request succeeded ({summary.failed} failed; first error: {first_error})"[:500]

    def _screen(
        self, number: int, engine: EngineConfig, server: ServerHandle, folder: Path, result: TrialResult,
        screening: Screening,
    ) -> bool:
        """The screening measurement, then its gate: True when the trial ends here (pruned, or the server died).
        Raises what the benchmark raises (the caller turns it into a failed trial)."""
        benchmark = self._benchmark or _default_benchmark()
        self.observer.phase(number, "screening")
        t_screen = time.monotonic()
        bench: BenchResult = asyncio.run(
            asyncio.wait_for(
                benchmark(server.base_url, self.workload, screening.load, self.slo, model=engine.name_for_clients,
                          telemetry=True, server_pid=server.pid),
                timeout=self.settings.measure_timeout_s,
            )
        )
        result.timings.screening_s = round(time.monotonic() - t_screen, 3)
        (folder / "screening.json").write_text(bench.model_dump_json(indent=2))
        result.screening_summary = bench.summary
        if not server.alive():
            result.state = TrialOutcome.FAILED
            result.reason = f"server exited during screening: {last_line(server.log_tail(lines=20))}"
            return True
        reason = screening.gate(bench.summary)
        if reason is None:
            return False
        result.state, result.reason = TrialOutcome.PRUNED, reason
        return True

    def _wait_for_free_gpu(self, engine: EngineConfig) -> str | None:
        """None once each visible GPU has the memory the config asks for free (or NVML cannot tell), else why not.

        vLLM refuses to start when another process holds the memory (a previous server still exiting, another
        job): waiting here, then failing with an environmental reason, keeps that from being blamed on the config.
        """
        wanted = engine.effective_gpu_memory_utilization
        deadline = time.monotonic() + self.settings.gpu_release_timeout_s
        while True:
            free = gpu_memory_free_fraction()
            if free is None or not free or min(free) >= wanted:
                return None
            if time.monotonic() >= deadline:
                return (
                    f"{attrs.GPU_BUSY}: only {100 * min(free):.0f}% of a GPU's memory is free after "
                    f"{self.settings.gpu_release_timeout_s:g} s, the config asks for gpu_memory_utilization {wanted:g} "
                    "(other processes hold it; not the config's fault: it will be served again)"
                )
            time.sleep(0.5)

    def _wait_gpu_release(self, before_mib: float | None) -> bool | None:
        """Poll GPU memory back to its pre-trial level (with a deadline); None when it cannot be read."""
        if before_mib is None:
            return None
        deadline = time.monotonic() + self.settings.gpu_release_timeout_s
        while True:
            now_mib = _gpu_memory_used_mib()
            if now_mib is None:
                return None
            if now_mib <= before_mib + self.settings.gpu_release_tolerance_mib:
                return True
            if time.monotonic() >= deadline:
                log.warning(
                    "GPU memory not released after the trial: %.0f MiB used, %.0f MiB before", now_mib, before_mib
                )
                return False
            time.sleep(0.5)


def _read_log(path: Path) -> str | None:
    """The whole server log (the root cause may be far above its tail); None when unreadable."""
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None
