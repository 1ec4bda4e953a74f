"""A soak's windows: how the run is cut by send time, and what each window holds (autotune.bench.soak)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Protocol, TypedDict

from pydantic import Field

from autotune.base_models import ClosedModel
from autotune.observe.cpu import Role


class SoakWindow(ClosedModel):
    start_s: float
    end_s: float
    settling: bool = Field(default=False, description="The settling span before the judged windows (no bound judges it)")
    sent: int
    failed: int
    ttft_p99_ms: float | None = None
    e2el_p99_ms: float | None = None
    rss_max_mib: float | None = None
    rss_max_by_role_mib: dict[Role, float] | None = Field(default=None, description="The largest RSS of each role")
    pss_max_mib: float | None = None
    pss_max_by_role_mib: dict[Role, float] | None = Field(default=None, description="The largest PSS of each role")
    fds_max: int | None = None
    fds_min: int | None = Field(default=None, description="The fewest open fds sampled in the window (the floor a leak raises)")
    gpu_memory_max_mib: float | None = None


def p99_of(values: Sequence[float]) -> float | None:
    """The 99th percentile (linear interpolation), to 0.001; None without values."""
    if not values:
        return None
    if len(values) == 1:
        return float(values[0])
    return round(statistics.quantiles(values, n=100, method="inclusive")[98], 3)


class FinishedRequest(Protocol):
    """What a window's latency figures read of a request: a record's (`RequestRecord`) or a live one (`DoneRequest`)."""

    @property
    def success(self) -> bool: ...
    @property
    def ttft_ms(self) -> float | None: ...
    @property
    def e2el_ms(self) -> float | None: ...


class RequestFigures(TypedDict):
    sent: int
    failed: int
    ttft_p99_ms: float | None
    e2el_p99_ms: float | None


def request_figures(sent: Sequence[FinishedRequest]) -> RequestFigures:
    """A window's `SoakWindow` fields from the requests sent in it: the record's and the live lines' alike."""
    ok = [r for r in sent if r.success]
    return RequestFigures(
        sent=len(sent), failed=len(sent) - len(ok),
        ttft_p99_ms=p99_of([r.ttft_ms for r in ok if r.ttft_ms is not None]),
        e2el_p99_ms=p99_of([r.e2el_ms for r in ok if r.e2el_ms is not None]),
    )


def window_spans(*, duration_s: float, window_s: float, settle_s: float = 0.0) -> list[tuple[float, float]]:
    """The soak's windows as (start, end) seconds of send time: [0, settle_s) first when `settle_s` > 0, then
    `window_s` each, a short tail (under half a window) joining the window before it (never the settling one)."""
    edges: list[float] = [0.0] if settle_s > 0 else []
    start = settle_s
    while start < duration_s - 1e-9:
        edges.append(start)
        start += window_s
    if len(edges) > (2 if settle_s > 0 else 1) and duration_s - edges[-1] < window_s / 2:
        edges.pop()
    return [(begin, edges[index + 1] if index + 1 < len(edges) else duration_s) for index, begin in enumerate(edges)]
