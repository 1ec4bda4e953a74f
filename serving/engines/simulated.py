"""The simulated engine: a CPU stand-in that models vLLM's continuous batching in real time.

It is always labeled simulated; its numbers are NOT GPU measurements. One asyncio task runs the
engine steps (`BatchScheduler`), sleeping each step's modeled duration; tokens go to per-request
queues with the time at which the (simulated) frontend would have delivered them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from typing import Any

from autotune.config import EngineConfig, EngineKind
from autotune.errors import AutotuneError
from serving.engines.base import EngineStats, EngineUnavailable, GenerationRequest, TokenEvent
from serving.engines.batching import BatchScheduler, Sequence
from serving.engines.cost_model import CostModel
from serving.engines.faults import FAULT_EXIT_CODE, FaultPlan
from serving.engines.frontend import Frontend, Frontends
from serving.engines.profile import SimulatorProfile

log = logging.getLogger("autotune.serve.simulated")

_WORDS = (
    " The",
    " image",
    " shows",
    " a",
    " small",
    " red",
    " house",
    " next",
    " to",
    " green",
    " tree",
    ",",
    " and",
    " sky",
    " is",
    " blue",
    " with",
    " white",
    " clouds",
    ".",
    " There",
    " are",
    " two",
    " people",
    " walking",
    " on",
    " path",
    " near",
    " the",
    " river",
    " in",
    " afternoon",
)
_MAX_LAG_S = 0.002  # a step that starts later than this after the previous one restarts the clock
_CRASH_DELAY_S = 0.2  # lets the N-th response reach the client before a crash_after_requests exit
_STOPPED = object()


class EngineStartError(AutotuneError):
    """The simulated engine refuses to start (as vLLM would), e.g. not enough KV cache."""


class _Output:
    __slots__ = ("frontend", "queue")

    def __init__(self, frontend: Frontend) -> None:
        self.frontend = frontend
        self.queue: asyncio.Queue[Any] = asyncio.Queue()


class SimulatedEngine:
    kind = EngineKind.SIMULATED

    def __init__(
        self,
        engine_config: EngineConfig,
        profile: SimulatorProfile,
        *,
        fault: FaultPlan | None = None,
        exit_process: Callable[[int], None] = os._exit,
    ) -> None:
        self.engine_config = engine_config
        self.profile = profile
        self.fault = fault or FaultPlan()
        self.cost = CostModel(profile, engine_config)
        self.scheduler = BatchScheduler(self.cost)
        self.frontends = Frontends(self.cost)
        self._exit_process = exit_process
        self._ready = False
        self._stalled = False
        self._wake = asyncio.Event()
        self._never = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started_at = 0.0
        self._busy_s = 0.0
        self._pending_frontend = 0
        self._admitted_total = 0
        self._finished_total = 0

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._ready

    async def start(self) -> None:
        if self.fault.kind == "crash_at_start":
            log.error("simulated fault crash_at_start: the engine fails to start")
            raise EngineStartError("simulated fault crash_at_start")
        settings, memory = self.cost.settings, self.cost.memory
        if memory.kv_capacity_tokens < settings.max_model_len:
            raise EngineStartError(
                f"simulated engine: to serve at least one request with max_model_len ({settings.max_model_len}) "
                f"{settings.max_model_len * memory.kv_bytes_per_token / 1024**3:.2f} GiB of KV cache is needed, "
                f"but only {memory.kv_capacity_tokens} tokens fit (weights {memory.weights_gib:.2f} GiB on a "
                f"{self.profile.gpu.memory_gib} GiB GPU at gpu_memory_utilization {settings.gpu_memory_utilization}). "
                "Increase gpu_memory_utilization or decrease max_model_len."
            )
        self._loop = asyncio.get_running_loop()
        self._started_at = self._loop.time()
        self._tasks.append(self._loop.create_task(self._step_loop(), name="simulated-engine-steps"))
        if self.fault.kind == "hang_at_start":
            log.warning("simulated fault hang_at_start: the engine never becomes ready")
        elif self.profile.gpu_costs.startup_s > 0:
            self._tasks.append(self._loop.create_task(self._load(self.profile.gpu_costs.startup_s)))
        else:
            self._ready = True

    async def _load(self, startup_s: float) -> None:
        await asyncio.sleep(startup_s)
        self._ready = True

    async def stop(self) -> None:
        self._ready = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for seq in [*self.scheduler.running, *self.scheduler.waiting]:
            if isinstance(seq.token, _Output):
                seq.token.queue.put_nowait(_STOPPED)

    # -- requests ------------------------------------------------------------------------------
    def check(self, request: GenerationRequest) -> GenerationRequest:
        return self.scheduler.resolve(request)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[TokenEvent]:
        if not self._ready or self._loop is None:
            raise EngineUnavailable("the engine is not ready")
        request = self.scheduler.resolve(request)
        if self._stalled:
            await self._never.wait()
        loop = self._loop
        output = _Output(self.frontends.pick())
        self._pending_frontend += 1
        admission = self.frontends.admission(output.frontend, loop.time(), request.images)
        try:
            delay = admission.done - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        except asyncio.CancelledError:  # the client gave up before its request was admitted: its queued work goes
            admission.release(loop.time())
            raise
        finally:
            self._pending_frontend -= 1
        self._admitted_total += 1
        if self.fault.kind == "stall_after_requests" and self._admitted_total > (self.fault.after_requests or 0):
            if not self._stalled:
                log.warning("simulated fault stall_after_requests: the engine stops generating")
            self._stalled = True
            await self._never.wait()
        seq = self.scheduler.add(request, token=output)
        self._wake.set()
        finished = False
        try:
            while True:
                item = await output.queue.get()
                if item is _STOPPED:
                    raise EngineUnavailable("the engine is shutting down")
                deliver_at, event = item
                delay = deliver_at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                finished = event.finish_reason is not None  # before yielding: the consumer may stop here
                yield event
                if finished:
                    return
        finally:
            if finished:
                self._on_finished()
            else:
                self.scheduler.abort(seq)

    def _on_finished(self) -> None:
        self._finished_total += 1
        if (
            self.fault.kind == "crash_after_requests"
            and self._finished_total == self.fault.after_requests
            and self._loop is not None
        ):
            self._loop.call_later(_CRASH_DELAY_S, self._crash)

    def _crash(self) -> None:
        log.error("simulated fault crash_after_requests: the process exits after %d requests", self._finished_total)
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stderr.flush()
        sys.stdout.flush()
        self._exit_process(FAULT_EXIT_CODE)

    # -- the step loop -------------------------------------------------------------------------
    async def _step_loop(self) -> None:
        assert self._loop is not None
        loop = self._loop
        scheduler = self.scheduler
        previous_end = loop.time()
        while True:
            if self._stalled or not scheduler.has_work:
                self._wake.clear()
                await self._wake.wait()
                previous_end = loop.time()
                continue
            outcome = scheduler.step()
            if outcome is None:
                continue
            now = loop.time()
            start = previous_end if now - previous_end < _MAX_LAG_S else now
            end = start + outcome.duration_s
            self._busy_s += outcome.duration_s
            delay = end - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            previous_end = end
            for seq in outcome.emitted:
                self._emit(seq, end)

    def _emit(self, seq: Sequence, now: float) -> None:
        output = seq.token
        assert isinstance(output, _Output)
        request = seq.request
        index = seq.generated - 1
        finish = None
        if seq.finished:
            finish = "length" if seq.generated >= request.max_tokens else "stop"
        base = request.seed if request.seed is not None else zlib.crc32(request.request_id.encode())
        event = TokenEvent(text=_WORDS[(base + index) % len(_WORDS)], index=index, finish_reason=finish)
        output.queue.put_nowait((self.frontends.deliver_token(output.frontend, now), event))

    # -- introspection -------------------------------------------------------------------------
    def stats(self) -> EngineStats:
        scheduler = self.scheduler
        elapsed = (self._loop.time() - self._started_at) if self._loop is not None else 0.0
        prefix_caching = self.cost.settings.enable_prefix_caching
        mm_queries, mm_hits = self.frontends.image_cache_counts()
        mm_cache = self.frontends.image_cache_enabled
        return EngineStats(
            queue_depth=self._pending_frontend + len(scheduler.waiting),
            running_seqs=len(scheduler.running),
            kv_usage=scheduler.kv_usage,
            preemptions_total=scheduler.preemptions_total,
            gpu_busy_fraction=min(1.0, self._busy_s / elapsed) if elapsed > 0 else 0.0,
            prefix_cache_queries=scheduler.prefix_cache_queries if prefix_caching else None,
            prefix_cache_hits=scheduler.prefix_cache_hits if prefix_caching else None,
            mm_cache_queries=mm_queries if mm_cache else None,
            mm_cache_hits=mm_hits if mm_cache else None,
            extra={"gpu_busy_seconds_total": self._busy_s, "steps_total": float(scheduler.steps_total)},
        )

    # -- cache resets (vLLM's dev routes; the app registers them under the same setting) -------------------
    def reset_prefix_cache(self) -> bool:
        done = self.scheduler.reset_prefix_cache()
        if done:
            log.info("prefix cache reset")
        else:
            log.warning("prefix cache not reset: requests are running (as vLLM, the route still answers 200)")
        return done

    def reset_mm_cache(self) -> None:
        self.frontends.reset_image_caches()
        log.info("multimodal cache reset")

    def reset_encoder_cache(self) -> None:
        """Nothing to forget: the simulated vision encoder runs for every request it admits (no encoder cache)."""

    def describe(self) -> dict[str, Any]:
        return {
            "engine": EngineKind.SIMULATED.value,
            "simulated": True,
            "note": "SIMULATED engine - not a GPU measurement",
            "profile": self.profile.name,
            "calibrated": self.profile.calibrated,
            "resolved_settings": asdict(self.cost.settings),
            "memory": self.cost.memory.model_dump(),
            "fault": None if self.fault.kind == "none" else self.fault.model_dump(),
        }
