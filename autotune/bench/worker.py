"""One client process's share of the load: warm-up, then the measured window (closed or open loop).

An open-loop window may stop before its schedule ends (slo_rate's steady-state windows, `WorkerPlan.wait_for_s` and
`deadline_s`): requests still streaming then are cancelled and recorded `unfinished`.

Runs in the caller's event loop (one client process) or in a spawned process (see processes.py).
All processes start their window at the same wall-clock instant given by the parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import aiohttp

from autotune.bench.client import Outcome, PreparedRequest, stream_chat
from autotune.bench.health import CpuMeter, LoopLagMonitor, ProcessHealth, percentile
from autotune.bench.progress import DoneRequest

BURN_ENV = "AUTOTUNE_BENCH_TEST_BURN_MS"
"""Test hook: busy-wait this many ms per received chunk, to starve the client deliberately."""
# An idle connection is closed by the client before the server's keep-alive ends (uvicorn's and vLLM's
# VLLM_HTTP_TIMEOUT_KEEP_ALIVE: 5 s). With a longer client keep-alive a request reused a connection the server was
# closing: "Connection reset by peer" / "Server disconnected" when the load fell after a queue had drained (7
# failures in the first minute of the H100 soak of 2026-12-05).
CLIENT_KEEPALIVE_S = 4.0


@dataclass(slots=True)
class WorkerPlan:
    worker_id: int
    chat_url: str
    headers: dict[str, str]
    requests: list[PreparedRequest]
    offsets_s: list[float] | None = None
    """Open loop: send time of each request, seconds from the window start. None: closed loop."""
    concurrency: int | None = None
    duration_s: float | None = None
    cycle_stride: int | None = None
    """Closed loop bounded by duration only: reuse the requests, adding this to indexes each round."""
    warmup: list[PreparedRequest] = field(default_factory=list)
    warmup_concurrency: int = 1
    phase: int = 0
    cpus: list[int] | None = None
    connect_timeout_s: float = 30.0
    read_timeout_s: float = 300.0
    """No byte for this long fails the request."""
    wait_for_s: float | None = None
    """Open loop, steady-state window: only the requests scheduled before this offset are waited for. Once they have
    all ended, sending stops and the requests still streaming are cancelled (recorded `unfinished`); the later sends
    only keep the load up meanwhile. None: send the whole schedule and wait for every request."""
    deadline_s: float | None = None
    """Open loop: at this offset from the window start, every request still streaming is cancelled (`unfinished`)."""


@dataclass(slots=True)
class WorkerReport:
    worker_id: int
    outcomes: list[Outcome]
    health: ProcessHealth
    warmup_outcomes: list[Outcome] = field(default_factory=list)


def done_request(outcome: Outcome) -> DoneRequest:
    return DoneRequest(outcome.send_time_s, outcome.success, outcome.ttft_ms, outcome.e2el_ms)


class Worker:
    def __init__(self, plan: WorkerPlan, on_done: Callable[[DoneRequest | None], None] | None = None) -> None:
        """`on_done`: called as each request of the window finishes (None for one cut off while streaming)."""
        self.plan = plan
        self.on_done = on_done
        self.burn_s = float(os.environ.get(BURN_ENV, "0") or 0) / 1000.0
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Worker:
        plan = self.plan
        limit = 0 if plan.offsets_s is not None else max(plan.concurrency or 1, plan.warmup_concurrency)
        connector = aiohttp.TCPConnector(
            limit=limit, limit_per_host=0, keepalive_timeout=CLIENT_KEEPALIVE_S, ttl_dns_cache=300
        )
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=plan.connect_timeout_s, sock_read=plan.read_timeout_s)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def _send(self, request: PreparedRequest, t0: float, warmup: bool = False) -> Outcome:
        assert self._session is not None
        return await stream_chat(
            self._session,
            self.plan.chat_url,
            request,
            headers=self.plan.headers,
            t0=t0,
            warmup=warmup,
            phase=self.plan.phase,
            burn_s_per_chunk=self.burn_s,
        )

    async def run_warmup(self) -> list[Outcome]:
        """Warm-up requests (also opens keep-alive connections); recorded, never measured."""
        pending = iter(self.plan.warmup)
        outcomes: list[Outcome] = []
        t0 = time.perf_counter()

        async def user() -> None:
            for request in pending:
                outcomes.append(await self._send(request, t0, warmup=True))

        await asyncio.gather(*(user() for _ in range(max(1, self.plan.warmup_concurrency))))
        return outcomes

    async def run_window(self, start_wall: float) -> WorkerReport:
        """Wait for the shared start instant, then send this process's share of the load."""
        t0 = time.perf_counter() + (start_wall - time.time())
        await asyncio.sleep(max(0.0, t0 - time.perf_counter()))
        monitor, cpu = LoopLagMonitor(), CpuMeter()
        monitor.start()
        cpu.start()
        send_lags_ms: list[float] = []
        if self.plan.offsets_s is None:
            outcomes = await self._closed_loop(t0)
        else:
            outcomes = await self._open_loop(t0, send_lags_ms)
        cpu_util, wall_s = cpu.stop()
        await monitor.stop()
        health = ProcessHealth(
            worker_id=self.plan.worker_id,
            cpu_util=cpu_util,
            wall_s=wall_s,
            loop_lag_p99_ms=percentile(monitor.lags_ms, 99),
            send_lag_p99_ms=percentile(send_lags_ms, 99),
            samples=len(monitor.lags_ms),
            cpus=sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [],
        )
        return WorkerReport(worker_id=self.plan.worker_id, outcomes=outcomes, health=health)

    def _closed_loop_requests(self) -> Iterator[PreparedRequest]:
        yield from self.plan.requests
        stride = self.plan.cycle_stride
        if stride is None or not self.plan.requests:
            return
        round_ = 1
        while True:
            for request in self.plan.requests:
                yield dataclasses.replace(request, index=request.index + round_ * stride)
            round_ += 1

    async def _closed_loop(self, t0: float) -> list[Outcome]:
        pending = self._closed_loop_requests()
        deadline = None if self.plan.duration_s is None else t0 + self.plan.duration_s
        outcomes: list[Outcome] = []

        async def user() -> None:
            while deadline is None or time.perf_counter() < deadline:
                request = next(pending, None)
                if request is None:
                    return
                outcome = await self._send(request, t0)
                outcomes.append(outcome)
                if self.on_done is not None:
                    self.on_done(done_request(outcome))

        await asyncio.gather(*(user() for _ in range(self.plan.concurrency or 1)))
        return outcomes

    async def _open_loop(self, t0: float, send_lags_ms: list[float]) -> list[Outcome]:
        plan = self.plan
        assert plan.offsets_s is not None
        sent: dict[asyncio.Task[Outcome], tuple[PreparedRequest, float]] = {}
        awaited: list[asyncio.Task[Outcome]] = []
        wait_for = math.inf if plan.wait_for_s is None else plan.wait_for_s
        all_awaited_sent = asyncio.Event()

        def done(task: asyncio.Task[Outcome]) -> None:
            if self.on_done is not None:
                finished = not task.cancelled() and task.exception() is None
                self.on_done(done_request(task.result()) if finished else None)

        async def send_schedule() -> None:
            for request, offset in zip(plan.requests, plan.offsets_s, strict=True):
                if offset >= wait_for:
                    all_awaited_sent.set()
                due = t0 + offset
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                send_lags_ms.append(max(0.0, (time.perf_counter() - due) * 1000.0))
                task = asyncio.create_task(self._send(request, t0))
                task.add_done_callback(done)
                sent[task] = (request, time.perf_counter() - t0)
                if offset < wait_for:
                    awaited.append(task)
            all_awaited_sent.set()

        sender = asyncio.create_task(send_schedule())
        deadline = None if plan.deadline_s is None else t0 + plan.deadline_s
        try:
            if plan.wait_for_s is None:
                await asyncio.wait([sender], timeout=None if deadline is None else max(0.0, deadline - time.perf_counter()))
            else:
                await all_awaited_sent.wait()
            pending = [task for task in (awaited if plan.wait_for_s is not None else list(sent)) if not task.done()]
            if pending:
                timeout = None if deadline is None else max(0.0, deadline - time.perf_counter())
                await asyncio.wait(pending, timeout=timeout)
        finally:  # stop sending, then cut what is still streaming (also when this window itself is cancelled)
            sender.cancel()
            for task in sent:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            if sent:
                await asyncio.wait(list(sent))
        return [self._outcome(task, *sent[task]) for task in sent]

    def _outcome(self, task: asyncio.Task[Outcome], request: PreparedRequest, send_time_s: float) -> Outcome:
        """The task's outcome, or an `unfinished` one for a request cancelled while streaming."""
        if not task.cancelled():
            return task.result()
        return Outcome(
            index=request.index, send_time_s=send_time_s, success=False, phase=self.plan.phase, unfinished=True,
            error="unfinished: still streaming when the window stopped waiting",
        )
