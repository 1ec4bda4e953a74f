"""When requests are sent and by which client process: pure functions, computed up front.

Open loop: arrival offsets from a seeded generator (Poisson: exponential gaps; constant: 1/rate),
the first request at t=0. The whole schedule is computed before the run and then dealt to client
processes round-robin, so the offered load is the same schedule whatever the process count.
Closed loop: the concurrency (and the request budget) is split across processes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Literal, TypeVar

import numpy as np

Arrival = Literal["poisson", "constant"]
T = TypeVar("T")

STREAMS_PER_PROCESS = 256
"""Closed loop: one client process per this many concurrent streams."""
PROCESS_CORE_SHARE = 0.5
"""Open loop: each client process is planned to use at most this share of a core (from the measured client cost,
see client_capacity.py). Headroom for what a CPU-time model misses: bursts of tokens that a batched server sends
for all streams at once, garbage collection, a core shared with other work; the self-watch catches the rest."""


def arrival_offsets_s(
    rate_rps: float,
    arrival: Arrival,
    *,
    seed: int,
    num_requests: int | None = None,
    duration_s: float | None = None,
) -> list[float]:
    """Send times in seconds from the start: at most `num_requests`, all before `duration_s`."""
    if rate_rps <= 0:
        raise ValueError(f"rate_rps must be > 0 (got {rate_rps})")
    if num_requests is None and duration_s is None:
        raise ValueError("set num_requests or duration_s")
    limit = num_requests if num_requests is not None else math.inf
    rng = np.random.default_rng(seed)
    offsets: list[float] = []
    now = 0.0
    while len(offsets) < limit and (duration_s is None or now < duration_s):
        offsets.append(now)
        now += float(rng.exponential(1.0 / rate_rps)) if arrival == "poisson" else 1.0 / rate_rps
    return offsets


def split_evenly(total: int, parts: int) -> list[int]:
    """`total` split into `parts` integers differing by at most one, largest first."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def deal_round_robin(items: Sequence[T], parts: int) -> list[list[T]]:
    return [list(items[i::parts]) for i in range(parts)]


def available_cpus(client_cpus: Sequence[int] | None = None) -> int:
    if client_cpus:
        return len(set(client_cpus))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def max_client_processes(client_cpus: Sequence[int] | None = None) -> int:
    """One process per client core: the cores given, else half of this machine's (the rest is the server's)."""
    return available_cpus(client_cpus) if client_cpus else max(1, available_cpus() // 2)


def choose_client_processes(
    *,
    concurrency: int | None = None,
    rate_rps: float | None = None,
    client_cpus: Sequence[int] | None = None,
    cpu_s_per_request: float | None = None,
) -> int:
    """Enough processes for the load, at most `max_client_processes`.

    Closed loop: one per `STREAMS_PER_PROCESS` streams. Open loop: `rate_rps * cpu_s_per_request` cores of work
    (the measured client cost of this workload's requests) spread so that no process is planned above
    `PROCESS_CORE_SHARE` of a core.
    """
    wanted = 1
    if concurrency is not None:
        wanted = max(wanted, math.ceil(concurrency / STREAMS_PER_PROCESS))
    if rate_rps is not None:
        if cpu_s_per_request is None:
            raise ValueError("an open loop needs cpu_s_per_request (the client cost of one request)")
        wanted = max(wanted, math.ceil(rate_rps * cpu_s_per_request / PROCESS_CORE_SHARE))
    return max(1, min(wanted, max_client_processes(client_cpus)))


def next_client_processes(processes: int, cpu_util_max: float | None, limit: int) -> int | None:
    """How many processes to measure a window again with after its client saturated; None: already at `limit`.

    Enough that the busiest process's load, spread evenly, falls to `PROCESS_CORE_SHARE` of a core; at least one more.
    """
    if processes >= limit:
        return None
    spread = math.ceil(processes * cpu_util_max / PROCESS_CORE_SHARE) if cpu_util_max else 2 * processes
    return min(limit, max(processes + 1, spread))
