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
RATE_PER_PROCESS_RPS = 200.0
"""Open loop: one client process per this many requests/s. experiments/loadgen-capacity measured
one process sustaining 600 req/s of 128-token streams (~75k chunks/s) on a core shared with the
server; these limits keep a 3x margin, and the self-watch flags a client that falls behind anyway."""


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


def choose_client_processes(
    *, concurrency: int | None = None, rate_rps: float | None = None, client_cpus: Sequence[int] | None = None
) -> int:
    """Enough processes for the load, at most half the usable cores (the rest is the server's)."""
    wanted = 1
    if concurrency is not None:
        wanted = max(wanted, math.ceil(concurrency / STREAMS_PER_PROCESS))
    if rate_rps is not None:
        wanted = max(wanted, math.ceil(rate_rps / RATE_PER_PROCESS_RPS))
    cap = available_cpus(client_cpus) if client_cpus else max(1, available_cpus() // 2)
    return max(1, min(wanted, cap))
