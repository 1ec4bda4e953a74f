"""The load generator watching itself: CPU use, event-loop lag and send lag per client process.

A client process that is busy (>90% of a core), whose event loop wakes late (lag p99 above
`LOOP_LAG_P99_LIMIT_MS`) or that sends requests late (open loop) measures itself as much as the
server: such a run is flagged `saturated`, with the reason, and never reported as the server's figure.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import psutil

from autotune.bench.schemas import ClientHealth

if TYPE_CHECKING:  # spawned client processes import this module: keep pydantic and numpy out of their start-up
    from autotune.bench.schemas import ClientHealth

CPU_UTIL_LIMIT = 0.90
LOOP_LAG_P99_LIMIT_MS = 25.0
SEND_LAG_P99_LIMIT_MS = 50.0
TICK_S = 0.01


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (as numpy's default), without importing numpy in clients."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class LoopLagMonitor:
    """A ticker task: how late the event loop runs a callback scheduled `TICK_S` ahead."""

    def __init__(self, tick_s: float = TICK_S) -> None:
        self.tick_s = tick_s
        self.lags_ms: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(self.tick_s)
            self.lags_ms.append(max(0.0, (time.perf_counter() - before - self.tick_s) * 1000.0))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass


class CpuMeter:
    """CPU time of this process (all threads) over wall time, in cores."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._cpu0 = 0.0
        self._wall0 = 0.0

    def _cpu(self) -> float:
        times = self._process.cpu_times()
        return times.user + times.system

    def start(self) -> None:
        self._cpu0, self._wall0 = self._cpu(), time.perf_counter()

    def stop(self) -> tuple[float, float]:
        """(cpu_util in cores, wall seconds)."""
        wall = time.perf_counter() - self._wall0
        return ((self._cpu() - self._cpu0) / wall if wall > 0 else 0.0), wall


@dataclass(slots=True)
class ProcessHealth:
    """One client process over the measured window."""

    worker_id: int
    cpu_util: float
    wall_s: float
    loop_lag_p99_ms: float | None
    send_lag_p99_ms: float | None = None
    samples: int = 0
    cpus: list[int] = field(default_factory=list)
    """The CPUs this process was allowed to run on."""


def assess(processes: list[ProcessHealth]) -> ClientHealth:
    """Merge per-process health into the run's ClientHealth (worst process wins)."""
    cpu = max((p.cpu_util for p in processes), default=None)
    lag = max((p.loop_lag_p99_ms for p in processes if p.loop_lag_p99_ms is not None), default=None)
    send = max((p.send_lag_p99_ms for p in processes if p.send_lag_p99_ms is not None), default=None)
    reasons: list[str] = []
    if cpu is not None and cpu > CPU_UTIL_LIMIT:
        reasons.append(f"a client process used {cpu:.0%} of a core (limit {CPU_UTIL_LIMIT:.0%})")
    if lag is not None and lag > LOOP_LAG_P99_LIMIT_MS:
        reasons.append(f"client event-loop lag p99 {lag:.1f} ms (limit {LOOP_LAG_P99_LIMIT_MS:.0f} ms)")
    if send is not None and send > SEND_LAG_P99_LIMIT_MS:
        reasons.append(f"requests sent late: send lag p99 {send:.1f} ms (limit {SEND_LAG_P99_LIMIT_MS:.0f} ms)")
    if reasons:
        reasons.append("use more client processes (--processes) or fewer streams")
    return ClientHealth(
        processes=max(1, len(processes)),
        cpu_util_max=None if cpu is None else round(cpu, 4),
        loop_lag_p99_ms=None if lag is None else round(lag, 3),
        send_lag_p99_ms=None if send is None else round(send, 3),
        saturated=bool(reasons),
        reason="; ".join(reasons) or None,
    )
