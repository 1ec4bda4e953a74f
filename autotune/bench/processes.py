"""Run worker plans: in this event loop (one client process) or in spawned client processes.

Protocol with spawned processes (multiprocessing "spawn", kept for a whole run by `ClientProcesses`): for each
window a child receives its plan, warms up, reports "ready", waits for the parent's go with a shared wall-clock
start instant, runs its window, reports the requests finished since its last report (`DoneRequest`s) every
`_PROGRESS_EVERY_S` and finally its WorkerReport, then waits for the next plan. A child that dies is an error of the benchmark itself (AutotuneError), not of the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing as mp
import os
import queue
import resource
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from autotune.bench.progress import DoneRequest
from autotune.bench.worker import Worker, WorkerPlan, WorkerReport
from autotune.errors import AutotuneError

_START_MARGIN_S = 0.05
_PROGRESS_EVERY_S = 0.25
_POLL_S = 0.2


class ClientProcessError(AutotuneError):
    """A client process of the load generator failed (a bug or a resource limit, not the server)."""


@dataclass(slots=True)
class PhaseRun:
    reports: list[WorkerReport]
    start_wall: float
    start_monotonic: float
    end_monotonic: float


def raise_open_files_limit() -> None:
    """Open-loop runs may hold one connection per in-flight request."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))
    except (ValueError, OSError):
        pass


BeforeWindow = Callable[[], Awaitable[None]]
OnDone = Callable[[DoneRequest | None], None]  # each finished request of a window, as it finishes


async def _nothing() -> None:
    return None


@contextlib.contextmanager
def _settled_heap() -> Iterator[None]:
    """Collect once, then move every object alive now (modules, prepared requests) out of the collector's sight.

    A full collection walks every tracked object: in a process that imported the benchmark's libraries and holds
    thousands of prepared requests it paused the event loop for up to 600 ms, which the self-watch reads as a
    saturated client (loop lag, late sends). Frozen objects are never walked; objects made during the window are
    collected as usual.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


async def _run_in_process(plan: WorkerPlan, on_done: OnDone, before_window: BeforeWindow) -> PhaseRun:
    raise_open_files_limit()
    async with Worker(plan, on_done) as worker:
        warmup = await worker.run_warmup()
        await before_window()
        with _settled_heap():
            start_wall = time.time() + _START_MARGIN_S
            start_monotonic = time.monotonic() + _START_MARGIN_S
            report = await worker.run_window(start_wall)
    report.warmup_outcomes = warmup
    return PhaseRun([report], start_wall, start_monotonic, time.monotonic())


def _child_main(worker_id: int, inbox: Any, messages: Any, go: Any, start_wall: Any) -> None:
    """Entry point of a spawned client process: one window per plan from `inbox`, until it says None."""
    try:
        raise_open_files_limit()
        allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        parent = mp.parent_process()
        while True:
            try:
                plan = inbox.get(timeout=_POLL_S)
            except queue.Empty:
                if parent is not None and not parent.is_alive():
                    return
                continue
            if plan is None:
                return
            if allowed is not None:
                os.sched_setaffinity(0, plan.cpus or allowed)
            asyncio.run(_child_async(plan, messages, go, start_wall))
    except BaseException:
        messages.put(("failed", worker_id, traceback.format_exc(limit=8)))


async def _child_async(plan: WorkerPlan, messages: Any, go: Any, start_wall: Any) -> None:
    loop = asyncio.get_running_loop()
    finished: list[DoneRequest | None] = []

    def count(done: DoneRequest | None) -> None:
        finished.append(done)

    def flush_progress() -> None:
        if finished:
            messages.put(("progress", plan.worker_id, finished.copy()))
            finished.clear()

    async def report_progress() -> None:
        while True:
            await asyncio.sleep(_PROGRESS_EVERY_S)
            flush_progress()

    async with Worker(plan, count) as worker:
        warmup = await worker.run_warmup()
        with _settled_heap():
            messages.put(("ready", plan.worker_id, None))
            parent = mp.parent_process()
            while not await loop.run_in_executor(None, go.wait, _POLL_S):
                if parent is not None and not parent.is_alive():
                    return
            reporter = asyncio.create_task(report_progress())
            report = await worker.run_window(start_wall.value)
            reporter.cancel()
    report.warmup_outcomes = warmup
    flush_progress()
    messages.put(("done", plan.worker_id, report))


class ClientProcesses:
    """Spawned client processes kept for a whole benchmark run and reused by every window.

    A process costs 0.5-1.5 s to start (interpreter, aiohttp): `ensure(n)` starts them as soon as the runner knows
    how many a window needs, so they start while its requests are rendered, and later windows pay nothing. Worker
    `i` of a window runs in process `i`; each window's plan reaches its process through that process's inbox.
    After a failed window the processes are in an unknown state: `run` refuses to reuse them (close and start anew).
    """

    def __init__(self) -> None:
        self._ctx = mp.get_context("spawn")
        self.messages = self._ctx.Queue()
        self.go = self._ctx.Event()
        self.start_wall = self._ctx.Value("d", 0.0)
        self._inboxes: list[Any] = []
        self._processes: list[Any] = []
        self._broken = False

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self._processes]

    def ensure(self, count: int) -> None:
        """At least `count` processes started (returns at once: they finish starting in the background)."""
        while len(self._processes) < count:
            worker_id = len(self._processes)
            inbox = self._ctx.Queue()
            process = self._ctx.Process(
                target=_child_main,
                args=(worker_id, inbox, self.messages, self.go, self.start_wall),
                name=f"autotune-bench-client-{worker_id}",
                daemon=True,
            )
            process.start()
            self._inboxes.append(inbox)
            self._processes.append(process)

    def close(self) -> None:
        for inbox in self._inboxes:
            with contextlib.suppress(Exception):
                inbox.put(None)
        for process in self._processes:
            process.join(timeout=2)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
        self._processes.clear()
        self._inboxes.clear()

    def _check_alive(self, waiting_for: set[int]) -> None:
        for worker_id in waiting_for:
            process = self._processes[worker_id]
            if not process.is_alive():
                raise ClientProcessError(f"client process {worker_id} exited with code {process.exitcode}")

    async def _next_message(self, waiting_for: set[int]) -> tuple[str, int, Any]:
        loop = asyncio.get_running_loop()
        while True:
            try:
                return await loop.run_in_executor(None, self.messages.get, True, _POLL_S)
            except queue.Empty:
                self._check_alive(waiting_for)

    async def _await(self, waiting: set[int], on_message: Callable[[str, int, Any], None]) -> None:
        while waiting:
            kind, worker_id, payload = await self._next_message(waiting)
            if kind == "failed":
                raise ClientProcessError(f"client process {worker_id} failed:\n{payload}")
            on_message(kind, worker_id, payload)
            if kind in ("ready", "done"):
                waiting.discard(worker_id)

    async def run(self, plans: list[WorkerPlan], on_done: OnDone, before_window: BeforeWindow) -> PhaseRun:
        if self._broken:
            raise ClientProcessError("the client processes failed in an earlier window; start new ones")
        if [plan.worker_id for plan in plans] != list(range(len(plans))):
            raise ValueError("plans must be numbered 0..n-1 (worker i runs in client process i)")
        self._broken = True  # until this window completes
        self.ensure(len(plans))
        self.go.clear()
        for plan in plans:
            self._inboxes[plan.worker_id].put(plan)
        await self._await(set(range(len(plans))), lambda *_: None)
        await before_window()
        start_wall = time.time() + _START_MARGIN_S
        start_monotonic = time.monotonic() + _START_MARGIN_S
        self.start_wall.value = start_wall
        self.go.set()
        reports: dict[int, WorkerReport] = {}

        def on_message(kind: str, worker_id: int, payload: Any) -> None:
            if kind == "progress":
                for done in payload:
                    on_done(done)
            elif kind == "done":
                reports[worker_id] = payload

        await self._await(set(range(len(plans))), on_message)
        end_monotonic = time.monotonic()
        self.go.clear()
        self._broken = False
        return PhaseRun([reports[i] for i in sorted(reports)], start_wall, start_monotonic, end_monotonic)


async def run_plans(
    plans: list[WorkerPlan],
    *,
    spawn: bool,
    on_done: OnDone | None = None,
    before_window: BeforeWindow | None = None,
    processes: ClientProcesses | None = None,
) -> PhaseRun:
    """Warm up every plan, call `before_window`, start all windows at one instant, return the reports.

    `spawn`: in client processes (`processes`, kept by the caller across windows; without it, ones started for this
    call and stopped after it); else in this event loop (exactly one plan).
    """
    callback: OnDone = on_done or (lambda _: None)
    hook = before_window or _nothing
    if not spawn:
        if len(plans) != 1:
            raise ValueError("in-process mode runs exactly one plan")
        return await _run_in_process(plans[0], callback, hook)
    if processes is not None:
        return await processes.run(plans, callback, hook)
    own = ClientProcesses()
    try:
        return await own.run(plans, callback, hook)
    finally:
        own.close()
