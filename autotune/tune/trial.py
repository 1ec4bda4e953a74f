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
Around it: feasibility (memory pre-check), gpu_wait (GPU memory free before, released after), measure (the
benchmark runs), trial_result (what it returns), server_process (the server's own process group).
With stack profiling on (`--stack-profile-hz`), the start is profiled as well: `stack-profile/start/`.
With `--warm-start`, the server is forked from a parent that imported its modules once (warm_start).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from autotune.bench.schemas import SLO, LoadSpec
from autotune.config import EngineConfig, EngineKind, Provenance, TunedConfig
from autotune.space import TrialSettings, config_hash
from autotune.observe.gpu import gpu_total_memory_gib
from autotune.tune import attrs
from autotune.tune.compile_cache import CACHE_ROOT_ENV
from autotune.tune.failures import failure_summary, find_oom, read_log
from autotune.tune.feasibility import check_feasibility
from autotune.tune.fidelity import Screening
from autotune.tune.gpu_wait import used_mib, wait_for_free_gpu, wait_gpu_release
from autotune.observe.stacks.gate import START_WINDOW, StackProfileGate
from autotune.tune.measure import BenchmarkFunc, TrialMeasurement, stack_dir, stack_profile_env, write_stack_profile
from autotune.tune.preflight import min_free_gib
from autotune.redact import hide_secret_env, missing_env_placeholders
from autotune.tune.server_process import ServerProcess, ServerStartError, server_environment
from autotune.tune.start_phases import start_phases_of_file
from autotune.tune.stops import check_free_space, out_of_space, out_of_space_error
from autotune.tune.trial_result import NullObserver, TrialObserver, TrialOutcome, TrialResult
from autotune.tune.warm_start import WarmParent
from serving.start_env import engine_start_env

log = logging.getLogger(__name__)


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
        warm_parent: WarmParent | None = None,
    ) -> None:
        self.study_dir = study_dir
        self.warm_parent = warm_parent  # --warm-start: servers forked from it where their environment allows
        self.compile_cache_root = compile_cache_root
        self.stack_profile_hz = stack_profile_hz
        self.server_cpus = sorted(set(server_cpus)) if server_cpus else None
        self.engine_kind = engine_kind
        self.workload = workload
        self.load = load
        self.slo = slo
        self.settings = settings
        self.observer: TrialObserver = observer or NullObserver()
        self.interrupted: TrialResult | None = None
        """The trial an interrupt (Ctrl-C, SIGTERM) stopped, with what it recorded until then."""
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
            try:
                self._serve_and_measure(number, engine, provenance, folder, result, screening)
            except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (a scheduler, `timeout` at a lease's end)
                # what the trial cost until then is kept: the study's trial-cost summary counts it
                result.state, result.reason = TrialOutcome.FAILED, attrs.interrupted_reason(exc)
                self.interrupted = self._close(result, folder, started)
                raise
        return self._close(result, folder, started)

    @staticmethod
    def _close(result: TrialResult, folder: Path, started: float) -> TrialResult:
        """The trial's total time and its trial.json."""
        result.timings.total_s = round(time.monotonic() - started, 3)
        (folder / "trial.json").write_text(result.model_dump_json(indent=2))
        log.info("trial %d %s%s", result.number, result.state, f": {result.reason}" if result.reason else "")
        return result

    def _serve_and_measure(
        self, number: int, engine: EngineConfig, provenance: Provenance, folder: Path, result: TrialResult,
        screening: Screening | None = None,
    ) -> None:
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
        busy = (  # the simulated engine uses no GPU
            wait_for_free_gpu(engine.effective_gpu_memory_utilization, self.settings.gpu_release_timeout_s)
            if self.engine_kind is EngineKind.VLLM
            else None
        )
        if busy is not None:
            result.state, result.reason = TrialOutcome.FAILED, busy
            return
        server_env = {
            **engine_start_env(self.engine_kind),  # as `autotune serve` would set them, so it needs no second exec
            **secret_env, **stack_profile_env(folder, self.stack_profile_hz), **self._compile_cache_env(engine, result),
        }
        before_mib = used_mib()
        factory = self._server_factory or ServerProcess
        launcher = self._warm_launcher(server_env, result)
        self.observer.phase(number, "starting")
        start_gate = self._open_start_profile(folder)
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
                **({"launcher": launcher} if launcher is not None else {}),
            ) as server:
                result.timings.startup_s = round(time.monotonic() - t0, 3)
                ready_at = datetime.now()
                self._note_launch_failure(server, result)
                self._close_start_profile(start_gate)
                self.observer.server_started(number, server)
                self._measurement().measure(number, engine, server, folder, result, screening)
                result.log_tail = server.log_tail(lines=50)
                self.observer.phase(number, "stopping")
                t_stop = time.monotonic()
                server.stop(timeout_s=self.settings.stop_timeout_s)
                result.timings.stop_s = round(time.monotonic() - t_stop, 3)
        except ServerStartError as exc:
            result.timings.startup_s = round(time.monotonic() - t0, 3)
            if self._close_start_profile(start_gate):
                write_stack_profile(folder, None)  # where a start that failed or hung spent its time
            result.log_tail = exc.log_tail
            if exc.reason == "timeout" and result.warm_start and launcher is not None:
                # a fork that hangs may hold a lock another thread of the parent held: no more forks in this study
                launcher.give_up(f"the forked server of trial {number} hung at start")
            whole_log = read_log(log_path) or exc.log_tail  # the cause is often far above the tail
            oom = find_oom(whole_log)
            code = f", exit code {exc.exit_code}" if getattr(exc, "exit_code", None) is not None else ""
            what = "timed out at start" if exc.reason == "timeout" else f"crashed at start{code}"
            result.state = TrialOutcome.FAILED
            cause = failure_summary(whole_log)
            result.reason = f"out of GPU memory at start: {oom}" if oom else f"server {what}: {cause}"
        finally:  # an interrupt (Ctrl-C, SIGTERM) too: what the start cost is on record
            result.start_phases = start_phases_of_file(log_path, started_at=started_at, ready_at=ready_at)
        if result.state is TrialOutcome.FAILED and result.reason and "out of" not in result.reason:
            oom = find_oom(result.log_tail)
            if oom:
                result.reason = f"out of GPU memory: {oom}"
        result.gpu_memory_before_mib = before_mib
        result.gpu_memory_released, result.gpu_memory_after_mib = wait_gpu_release(
            before_mib, self.settings.gpu_release_timeout_s, self.settings.gpu_release_tolerance_mib
        )

    def _warm_launcher(self, server_env: dict[str, str], result: TrialResult) -> WarmParent | None:
        """The warm parent when this server can be forked from it (recorded in `result.warm_start`), else None."""
        if self.warm_parent is None:
            return None
        cold_reason = self.warm_parent.cold_start_reason(server_environment(server_env))
        result.warm_start = cold_reason is None
        if cold_reason is not None:
            log.info("trial %d starts cold: %s", result.number, cold_reason)
            result.cold_start_reason = cold_reason
            return None
        return self.warm_parent

    @staticmethod
    def _note_launch_failure(server: Any, result: TrialResult) -> None:
        """A server whose warm parent could not fork it started cold (`ServerProcess.launch_failure`)."""
        failure = getattr(server, "launch_failure", None)
        if failure:
            log.warning("trial %d started cold: %s", result.number, failure)
            result.warm_start, result.cold_start_reason = False, failure

    def _open_start_profile(self, folder: Path) -> StackProfileGate | None:
        """With stack profiling on, the server's start is profiled too, as the window `START_WINDOW` (from the first
        import of each process until /health answers), so that where a start spends its time is on record."""
        if not self.stack_profile_hz:
            return None
        gate = StackProfileGate(stack_dir(folder))
        gate.open(START_WINDOW)
        return gate

    @staticmethod
    def _close_start_profile(gate: StackProfileGate | None) -> bool:
        if gate is None:
            return False
        if gate.path.exists():
            gate.close(START_WINDOW)
        return True

    def _compile_cache_env(self, engine: EngineConfig, result: TrialResult) -> dict[str, str]:
        """VLLM_CACHE_ROOT for a vLLM server (the config's own env wins: vLLM's launcher exports it last)."""
        if self.engine_kind is not EngineKind.VLLM or self.compile_cache_root is None:
            return {}
        root = engine.env.get(CACHE_ROOT_ENV) or str(self.compile_cache_root)
        result.compile_cache_root = root
        return {CACHE_ROOT_ENV: str(self.compile_cache_root)}

    def _measurement(self) -> TrialMeasurement:
        return TrialMeasurement(
            workload=self.workload, load=self.load, slo=self.slo, settings=self.settings, observer=self.observer,
            benchmark=self._benchmark, stack_profile_hz=self.stack_profile_hz,
        )

