"""Measuring a running trial server: warm-up, the screening window and its gate (fidelity), the measured run, and
the server's stack profile; every way it goes wrong becomes the `TrialResult`'s state and reason."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from autotune.bench.runner import run_benchmark
from autotune.bench.schemas import SLO, BenchResult, LoadSpec
from autotune.observe.stacks.activity import stack_metrics
from autotune.observe.stacks.reader import summarize_stack_profile
from autotune.config import EngineConfig
from autotune.errors import AutotuneError
from autotune.space import TrialSettings
from autotune.tune.failures import engine_death_reason, failure_summary, last_line, read_log
from autotune.tune.fidelity import Screening, full_measurement_bracket
from autotune.tune.trial_result import ServerHandle, TrialObserver, TrialOutcome, TrialResult
from serving.autostart import __file__ as autostart_init
from autotune.observe.stacks.profiler import DIR_ENV, HZ_ENV

# The benchmark entry point: (url, workload, load, slo, model=..., telemetry=...) -> BenchResult (async).
BenchmarkFunc = Callable[..., Any]


def stack_dir(folder: Path) -> Path:
    return folder / "stack-profile"


def stack_profile_env(folder: Path, hz: float | None) -> dict[str, str]:
    """The server's environment for `autotune.observe.stacks.profiler` (every process: the autostart folder first on PYTHONPATH)."""
    if not hz:
        return {}
    paths = [str(Path(autostart_init).parent), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {DIR_ENV: str(stack_dir(folder).resolve()), HZ_ENV: f"{hz:g}", "PYTHONPATH": os.pathsep.join(paths)}


def write_stack_profile(folder: Path, reported_rate_rps: float | None) -> dict[str, float]:
    """stack_profile.json (per window, process and thread) and the flat figures of the reported window and probe."""
    directory = stack_dir(folder)
    if not directory.is_dir():
        return {}
    summary = summarize_stack_profile(directory)
    (folder / "stack_profile.json").write_text(summary.model_dump_json(indent=2))
    return stack_metrics(directory, reported_rate_rps)


SERVER_WATCH_S = 1.0
"""How often a running benchmark checks that its trial's server is still alive."""


class ServerGone(Exception):
    """The trial's server exited while a benchmark against it ran (the benchmark was cancelled)."""


async def _while_alive(coroutine: Any, server: ServerHandle) -> Any:
    """Await `coroutine`; cancel it and raise ServerGone once `server` is no longer alive."""
    task = asyncio.ensure_future(coroutine)
    while True:
        done, _ = await asyncio.wait({task}, timeout=SERVER_WATCH_S)
        if done:
            return task.result()
        if not server.alive():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task  # its cleanup (client processes, samplers) runs before the trial goes on
            raise ServerGone()


class TrialMeasurement:
    """One trial's benchmark runs against its server, in the order warm-up -> screening -> measured window."""

    def __init__(
        self,
        *,
        workload: Any,
        load: LoadSpec,
        slo: SLO,
        settings: TrialSettings,
        observer: TrialObserver,
        benchmark: BenchmarkFunc | None = None,
        stack_profile_hz: float | None = None,
    ) -> None:
        self.workload = workload
        self.load = load
        self.slo = slo
        self.settings = settings
        self.observer = observer
        self.benchmark = benchmark or run_benchmark
        self.stack_profile_hz = stack_profile_hz

    def _run(self, coroutine: Any, server: ServerHandle) -> Any:
        """The benchmark `coroutine`, cut by the measure timeout (TimeoutError) or, within SERVER_WATCH_S, by its
        server's exit (ServerGone): the rest of a window sent to no server would only collect connection errors."""
        return asyncio.run(asyncio.wait_for(_while_alive(coroutine, server), timeout=self.settings.measure_timeout_s))

    def measure(
        self, number: int, engine: EngineConfig, server: ServerHandle, folder: Path, result: TrialResult,
        screening: Screening | None = None,
    ) -> None:
        """Warm-up, screening, measured window; a server or engine core that died on the way fails the trial with
        what vLLM's log says (the death line and root cause, not the generic error every later request got)."""
        benchmark = self.benchmark
        model = engine.name_for_clients
        try:
            if self.settings.warmup_requests > 0:
                self.observer.phase(number, "warm-up")
                t_warm = time.monotonic()
                warm = self.load.warmup(self.settings.warmup_requests)
                self._run(benchmark(server.base_url, self.workload, warm, self.slo, model=model, telemetry=False), server)
                result.timings.warmup_s = round(time.monotonic() - t_warm, 3)
            if not server.alive():
                result.state = TrialOutcome.FAILED
                result.reason = f"server exited during warm-up: {self._server_failure(server, result)}"
                return
            if screening is not None and self._screen(number, engine, server, folder, result, screening):
                return
            load = self._full_load(screening, result)
            self.observer.phase(number, "measuring")
            t_measure = time.monotonic()
            bench: BenchResult = self._run(
                benchmark(
                    server.base_url, self.workload, load, self.slo, model=model, telemetry=True,
                    server_pid=server.pid,
                    **({"stack_profile_dir": stack_dir(folder)} if self.stack_profile_hz else {}),
                ),
                server,
            )
            result.timings.measure_s = round(time.monotonic() - t_measure, 3)
        except ServerGone:
            self._fail_server_exited(server, result)
            return
        except TimeoutError:
            result.state = TrialOutcome.FAILED
            result.reason = self._with_engine_death(
                f"benchmark did not finish within {self.settings.measure_timeout_s:g} s (server stalled or hung)", result
            )
            return
        except (AutotuneError, OSError) as exc:
            result.state = TrialOutcome.FAILED
            result.reason = self._with_engine_death(f"benchmark failed: {type(exc).__name__}: {exc}"[:500], result)
            return
        result_path = folder / "result.json"
        result_path.write_text(bench.model_dump_json(indent=2))
        if self.stack_profile_hz:
            result.stack_metrics = write_stack_profile(folder, bench.summary.slo_rate_rps)
        result.result_path = str(result_path)
        result.summary = bench.summary
        if len(bench.sweep) > 1:
            result.peak_summary = max(bench.sweep, key=lambda window: window.throughput_rps or 0.0)
        result.simulated = result.simulated or bench.simulated
        summary = bench.summary
        if not server.alive():
            self._fail_server_exited(server, result)
        elif (death := engine_death_reason(read_log(result.log_path))) is not None:
            # vLLM keeps its API server up after an engine death only with VLLM_KEEP_ALIVE_ON_ENGINE_DEATH=1, and
            # stops it a moment after the first failed request otherwise: either way the window's figures are void.
            result.state = TrialOutcome.FAILED
            result.reason = f"engine core died during the benchmark: {death}"
        elif summary.completed == 0:
            first_error = next((r.error for r in bench.requests if r.error), None)
            result.state = TrialOutcome.FAILED
            result.reason = f"no request succeeded ({summary.failed} failed; first error: {first_error})"[:500]

    def _full_load(self, screening: Screening | None, result: TrialResult) -> LoadSpec:
        """The full measurement's load: the space's, with requests after the screening's (the same seed on the same
        server: on an H100 on 2026-12-07 the full measurement's first window re-sent the screening's requests, 15-16%
        prefix- and multimodal-cache hits, and was flagged and thrown away), starting from the screening's bracket
        where it gave one (`full_from_screening`, slo_rate, no bracket of the space's own); the bracket is recorded on
        the trial."""
        load = self.load
        if screening is not None and result.screening_next_request is not None and screening.load.seed == load.seed:
            load = load.model_copy(update={"first_request": result.screening_next_request})
        if (screening is None or not screening.full_from_screening or result.screening_summary is None
                or load.mode != "slo_rate" or load.slo_rate_bracket is not None):
            return load
        bracket = full_measurement_bracket(result.screening_summary)
        if bracket is None:
            return load
        result.full_measurement_bracket = bracket
        return load.model_copy(update={"slo_rate_bracket": bracket})

    @staticmethod
    def _with_engine_death(reason: str, result: TrialResult) -> str:
        """A benchmark that broke off (timeout, client error) names the engine core's death when vLLM logged one."""
        death = engine_death_reason(read_log(result.log_path))
        return reason if death is None else f"{reason}; {death}"

    @classmethod
    def _fail_server_exited(cls, server: ServerHandle, result: TrialResult) -> None:
        result.state = TrialOutcome.FAILED
        result.reason = f"server exited during the benchmark: {cls._server_failure(server, result)}"

    @staticmethod
    def _server_failure(server: ServerHandle, result: TrialResult) -> str:
        """What the server's log says of its end: vLLM's engine-death line or root cause, else its last line."""
        log = read_log(result.log_path)
        if log is None:
            return last_line(server.log_tail(lines=20))
        return engine_death_reason(log) or failure_summary(log)

    def _screen(
        self, number: int, engine: EngineConfig, server: ServerHandle, folder: Path, result: TrialResult,
        screening: Screening,
    ) -> bool:
        """The screening measurement, then its gate: True when the trial ends here (pruned, or the server died).
        Raises what the benchmark raises (the caller turns it into a failed trial)."""
        self.observer.phase(number, "screening")
        t_screen = time.monotonic()
        bench: BenchResult = self._run(
            self.benchmark(server.base_url, self.workload, screening.load, self.slo, model=engine.name_for_clients,
                           telemetry=True, server_pid=server.pid),
            server,
        )
        result.timings.screening_s = round(time.monotonic() - t_screen, 3)
        (folder / "screening.json").write_text(bench.model_dump_json(indent=2))
        result.screening_summary = bench.summary
        result.screening_next_request = bench.next_request
        if not server.alive():
            result.state = TrialOutcome.FAILED
            result.reason = f"server exited during screening: {self._server_failure(server, result)}"
            return True
        reason = screening.gate(bench.summary)
        if reason is None:
            return False
        result.state, result.reason = TrialOutcome.PRUNED, reason
        return True
