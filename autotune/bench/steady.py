"""Steady-state windows of the slo_rate objective: how long a window sends, which requests count, whether it kept pace.

A window at rate R sends its arrivals (Poisson or constant) from t = 0 and is cut, by each request's send time, into:

- ramp `[0, ramp_s)`: the server fills up from idle; these requests are load only, left out of every figure;
- steady `[ramp_s, send_s)`: the measured requests. Each counts with its whole latency, also when it ends during the
  drain (leaving out the requests still in flight at `send_s` would leave out the slowest ones);
- drain `[send_s, send_s + drain_limit_s)`: arrivals go on at R, so the last steady requests finish under the same
  load; they are load only. The window stops as soon as every request sent before `send_s` has ended, and at the
  latest at the drain limit: a steady request still streaming then is cut and counts as failed (`unfinished`);
  drain requests still streaming are cancelled.

Latency scale L (seconds, an E2E p90): the capacity probe's when a probe ran; without one (`slo_rate_bracket`), the
steady part's of the highest rate that met the SLO so far; before any did, the window's own, from the requests it
sent in its first quarter (its ramp is then cut after it ran).

Sizing (`slo_rate_window_s` unset; M = slo_rate_min_steady_s, N = slo_rate_min_completions):
    steady_s = max(M, N / R, slo_rate_steady_latencies * L)
    ramp_s   = min(slo_rate_ramp_latencies * L, steady_s / 3)          (at most a quarter of the window)
    send_s   = ramp_s + steady_s
    L unknown: steady_s = max(M, N / R), send_s = 4/3 steady_s, ramp_s cut afterwards (at most send_s / 4)
Fixed (`slo_rate_window_s` = W): send_s = W, ramp_s = min(slo_rate_ramp_latencies * L, W / 4).
Drain limit: max(DRAIN_LATENCIES * L, MIN_DRAIN_S); L unknown: send_s / 4.

Falling behind: backlog(t) = requests sent by t minus requests ended by t (any outcome; an unfinished one never
ends), over all requests of the window, the ramp's included. The least-squares line of backlog(t) over the steady
part may rise by at most max(slo_rate_max_backlog_growth_s * R, BACKLOG_GROWTH_FRACTION * steady sends). A server
that keeps pace holds its backlog level whatever the output lengths (long outputs raise the level, not the slope);
one that does not grows it by (R - its rate) per second whatever the latencies of the requests that did finish.

Verdict, first that applies: no steady request completed; falls behind; error rate > SLO_RATE_MAX_ERROR_RATE
(unfinished steady requests included); a p99 set in the SLO (TTFT, TPOT, E2E) above its bound; else met.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from autotune.bench.metrics import slo_p99_verdict
from autotune.bench.schemas import SLO, LoadSpec, RequestRecord, SteadyWindow, Summary

MAX_RAMP_SHARE = 0.25
"""The ramp is at most this share of a window's sending time."""
DRAIN_LATENCIES = 3.0
"""The drain waits for the steady requests at most this many latency scales after the last steady send."""
MIN_DRAIN_S = 1.0
BACKLOG_GROWTH_FRACTION = 0.03
"""Backlog growth allowed as a share of the steady part's sends (long windows); the seconds bound covers short ones."""
BACKLOG_GRID_POINTS = 400
LatencySource = Literal["probe", "earlier window", "this window"]


@dataclass(frozen=True, slots=True)
class WindowPlan:
    """One steady-state window before it runs: how long it sends and, when the latency scale is known, its ramp."""

    send_s: float
    drain_limit_s: float
    ramp_s: float | None
    """None: the latency scale is unknown; the ramp is cut from the window's own first quarter after it ran."""
    latency_s: float | None
    latency_source: LatencySource
    sized: bool

    @property
    def schedule_s(self) -> float:
        """Arrivals are scheduled over the sending time and the drain."""
        return self.send_s + self.drain_limit_s


def plan_window(load: LoadSpec, rate_rps: float, latency_s: float | None, source: LatencySource) -> WindowPlan:
    """The window at `rate_rps` (see the module docstring); `latency_s` None: not known before the window."""
    fixed = load.slo_rate_window_s
    if latency_s is None or latency_s <= 0:  # the ramp is cut after the window, from its own first quarter
        send = fixed if fixed is not None else _steady_minimum(load, rate_rps) / (1 - MAX_RAMP_SHARE)
        return WindowPlan(send, MAX_RAMP_SHARE * send, None, None, "this window", sized=fixed is None)
    ramp = load.slo_rate_ramp_latencies * latency_s
    if fixed is not None:
        send = fixed
        ramp = min(ramp, MAX_RAMP_SHARE * send)
    else:
        steady = max(_steady_minimum(load, rate_rps), load.slo_rate_steady_latencies * latency_s)
        ramp = min(ramp, steady * MAX_RAMP_SHARE / (1 - MAX_RAMP_SHARE))
        send = ramp + steady
    drain = max(DRAIN_LATENCIES * latency_s, MIN_DRAIN_S)
    return WindowPlan(send, drain, ramp, latency_s, source, sized=fixed is None)


def _steady_minimum(load: LoadSpec, rate_rps: float) -> float:
    return max(load.slo_rate_min_steady_s, load.slo_rate_min_completions / rate_rps)


def end_s(record: RequestRecord) -> float:
    """When the request ended (seconds from the window start); infinity for one cut while streaming."""
    if record.unfinished:
        return math.inf
    return record.send_time_s + (record.e2el_ms or 0.0) / 1000.0


def e2el_p90_s(records: Sequence[RequestRecord]) -> float | None:
    """E2E p90 in seconds of the successful records; None without any."""
    values = [r.e2el_ms / 1000.0 for r in records if r.success and r.e2el_ms is not None]
    return float(np.percentile(values, 90)) if values else None


@dataclass(frozen=True, slots=True)
class WindowCut:
    """The window after it ran: its records labeled ramp/steady/drain, and the ramp and latency scale used."""

    records: list[RequestRecord]
    ramp_s: float
    latency_s: float | None
    latency_source: LatencySource


def cut_window(records: Sequence[RequestRecord], plan: WindowPlan, ramp_latencies: float) -> WindowCut:
    """Label each record (by send time) ramp, steady or drain; cut the ramp from the window's own latency if needed."""
    window = [r for r in records if not r.warmup]
    ramp, latency, source = plan.ramp_s, plan.latency_s, plan.latency_source
    if ramp is None:
        first_quarter = [r for r in window if r.send_time_s < MAX_RAMP_SHARE * plan.send_s]
        latency = e2el_p90_s(first_quarter)
        ramp = MAX_RAMP_SHARE * plan.send_s if latency is None else min(ramp_latencies * latency, MAX_RAMP_SHARE * plan.send_s)
        source = "this window"

    def part(record: RequestRecord) -> Literal["ramp", "steady", "drain"]:
        if record.send_time_s < ramp:
            return "ramp"
        return "steady" if record.send_time_s < plan.send_s else "drain"

    labeled = [r if r.warmup else r.model_copy(update={"window_part": part(r)}) for r in records]
    return WindowCut(labeled, ramp, latency, source)


def backlog_line(records: Sequence[RequestRecord], start_s: float, stop_s: float) -> tuple[float, float]:
    """The least-squares line of the backlog (sent minus ended) over [start_s, stop_s]: its values at both ends."""
    if stop_s <= start_s:
        return 0.0, 0.0
    sends = np.sort([r.send_time_s for r in records if not r.warmup])
    ends = np.sort([end_s(r) for r in records if not r.warmup])
    times = np.linspace(start_s, stop_s, BACKLOG_GRID_POINTS)
    backlog = np.searchsorted(sends, times, side="right") - np.searchsorted(ends, times, side="right")
    slope, intercept = np.polyfit(times, backlog.astype(float), 1)
    return float(slope * start_s + intercept), float(slope * stop_s + intercept)


def judge_window(
    summary: Summary, cut: WindowCut, plan: WindowPlan, slo: SLO, load: LoadSpec, rate_rps: float
) -> SteadyWindow:
    """The window's steady-state figures and verdict (`summary` holds the figures of its steady requests)."""
    window = [r for r in cut.records if not r.warmup]
    parts = {name: [r for r in window if r.window_part == name] for name in ("ramp", "steady", "drain")}
    steady = parts["steady"]
    backlog_start, backlog_end = backlog_line(window, cut.ramp_s, plan.send_s)
    growth = backlog_end - backlog_start
    limit = max(load.slo_rate_max_backlog_growth_s * rate_rps, BACKLOG_GROWTH_FRACTION * len(steady))
    before_send = [end_s(r) for r in window if r.send_time_s < plan.send_s]
    last_end = max(before_send, default=plan.send_s)
    drain = plan.drain_limit_s if math.isinf(last_end) else max(0.0, last_end - plan.send_s)
    verdict: str | None
    fell_behind = growth > limit
    if summary.completed == 0:
        verdict = "no steady request completed"
    elif fell_behind:
        verdict = (
            f"falls behind: the backlog grew by {growth:.0f} requests over the {plan.send_s - cut.ramp_s:.1f} s steady "
            f"part (limit {limit:.0f}: {load.slo_rate_max_backlog_growth_s:g} s of arrivals or "
            f"{BACKLOG_GROWTH_FRACTION:.0%} of its sends)"
        )
    else:
        verdict = slo_p99_verdict(summary, slo)
    return SteadyWindow(
        sized=plan.sized,
        latency_scale_s=None if cut.latency_s is None else round(cut.latency_s, 4),
        latency_source=cut.latency_source,
        send_s=round(plan.send_s, 3),
        ramp_s=round(cut.ramp_s, 3),
        steady_s=round(plan.send_s - cut.ramp_s, 3),
        drain_limit_s=round(plan.drain_limit_s, 3),
        drain_s=round(drain, 3),
        ramp_requests=len(parts["ramp"]),
        steady_requests=len(steady),
        drain_requests=len(parts["drain"]),
        unfinished=sum(1 for r in steady if r.unfinished),
        backlog_start=round(backlog_start, 2),
        backlog_end=round(backlog_end, 2),
        backlog_growth=round(growth, 2),
        backlog_growth_limit=round(limit, 2),
        fell_behind=fell_behind,
        met=verdict is None,
        verdict=verdict or "met",
    )
