"""Steady-state windows (autotune.bench.steady) on request records of modeled servers: sizing, ramp, backlog verdict.

The records are computed, not measured: an infinite server (every request served at once, latency from its output
length) and a single FIFO server below the offered rate. End-to-end runs against a real HTTP server are in
test_bench_steady_windows.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from autotune.bench.metrics import compute_summary, completion_rate_rps, send_rate_rps, slo_p99_verdict
from autotune.bench.schemas import SLO, LoadSpec, RequestRecord
from autotune.bench.steady import (
    BACKLOG_GROWTH_FRACTION,
    WindowPlan,
    cut_window,
    judge_window,
    plan_window,
)

SLO_VLM = SLO(ttft_ms=2000, tpot_ms=50)
TTFT_MS = 50.0
TPOT_MS = 40.0


def _load(**fields: object) -> LoadSpec:
    return LoadSpec(mode="slo_rate", concurrency=8, **fields)  # type: ignore[arg-type]


def _records(sends: np.ndarray, waits_s: np.ndarray, tokens: np.ndarray) -> list[RequestRecord]:
    """Requests that wait `waits_s` before their first token, then stream `tokens` at TPOT_MS."""
    return [
        RequestRecord(
            index=i, send_time_s=float(send), success=True, ttft_ms=1000 * float(wait) + TTFT_MS,
            e2el_ms=1000 * float(wait) + TTFT_MS + TPOT_MS * (int(n) - 1), output_tokens=int(n),
        )
        for i, (send, wait, n) in enumerate(zip(sends, waits_s, tokens, strict=True))
    ]


def _poisson(rate: float, span_s: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1 / rate, int(rate * span_s * 1.5) + 10)
    sends = np.concatenate([[0.0], np.cumsum(gaps)])
    return sends[sends < span_s]


def _judge(records: list[RequestRecord], plan: WindowPlan, load: LoadSpec, rate: float, slo: SLO = SLO_VLM):
    cut = cut_window(records, plan, load.slo_rate_ramp_latencies)
    summary = compute_summary(cut.records, slo, offered_rate_rps=rate)
    return cut, summary, judge_window(summary, cut, plan, slo, load, rate)


def test_a_window_is_sized_from_the_latency_scale() -> None:
    load = _load()  # steady part >= 30 s, >= 600 sends, >= 10 latencies; ramp 2 latencies
    short = plan_window(load, 80.0, 3.5, "probe")  # the reference VLM at 80 req/s: 10 latencies rule
    assert (short.ramp_s, short.send_s, short.drain_limit_s) == pytest.approx((7.0, 42.0, 10.5))
    slow = plan_window(load, 5.0, 1.0, "probe")  # a low rate: 600 requests take 120 s
    assert (slow.ramp_s, slow.send_s) == pytest.approx((2.0, 122.0))
    long_outputs = plan_window(load, 15.0, 20.0, "probe")  # 20 s requests: 200 s steady, 40 s ramp
    assert (long_outputs.ramp_s, long_outputs.send_s) == pytest.approx((40.0, 240.0)) and long_outputs.sized
    fixed = plan_window(_load(slo_rate_window_s=120.0), 80.0, 3.5, "probe")
    assert (fixed.ramp_s, fixed.send_s, fixed.sized) == pytest.approx((7.0, 120.0, False))
    capped = plan_window(_load(slo_rate_window_s=20.0), 80.0, 3.5, "probe")
    assert capped.ramp_s == pytest.approx(5.0)  # at most a quarter of the window
    unknown = plan_window(load, 80.0, None, "earlier window")  # a bracket's first window: no latency yet
    assert unknown.ramp_s is None and unknown.send_s == pytest.approx(40.0) and unknown.latency_source == "this window"
    assert unknown.schedule_s == pytest.approx(50.0)  # arrivals go on through the drain


def test_requests_sent_in_the_ramp_or_the_drain_do_not_count() -> None:
    load = _load(slo_rate_window_s=20.0)
    plan = plan_window(load, 10.0, 1.0, "probe")  # ramp 2 s
    sends = np.arange(0, 25, 0.1)  # 10 req/s, through the drain
    waits = np.where(sends < 2.0, 3.0, 0.0)  # a cold server: the ramp's requests wait 3 s for their first token
    records = _records(sends, waits, np.full(len(sends), 20))
    whole = compute_summary(records, SLO_VLM)
    assert whole.ttft_ms.p99 > 2000  # counted, the ramp would fail the SLO
    cut, summary, verdict = _judge(records, plan, load, 10.0)
    parts = [r.window_part for r in cut.records]
    assert parts.count("ramp") == 20 and parts.count("steady") == 180 and parts.count("drain") == 50
    assert summary.completed == 180 and summary.ttft_ms.p99 == pytest.approx(TTFT_MS)
    assert verdict.met and (verdict.ramp_requests, verdict.steady_requests, verdict.drain_requests) == (20, 180, 50)


def test_without_a_latency_scale_the_ramp_is_cut_from_the_windows_own_first_quarter() -> None:
    load = _load(slo_rate_window_s=20.0)
    plan = plan_window(load, 10.0, None, "earlier window")
    sends = np.arange(0, 20, 0.1)
    records = _records(sends, np.zeros(len(sends)), np.full(len(sends), 26))  # 50 + 25 * 40 ms = 1.05 s each
    cut, _, verdict = _judge(records, plan, load, 10.0)
    assert cut.latency_s == pytest.approx(1.05) and cut.ramp_s == pytest.approx(2.1)  # 2 x its own E2E p90
    assert verdict.latency_source == "this window" and verdict.met


def test_long_outputs_that_keep_pace_pass_where_the_old_first_to_last_rule_said_fell_behind() -> None:
    """The dataset of the issue: 32-512 output tokens (1.3-20 s). A server serving all at once keeps pace at any rate."""
    rate = 10.0
    rng = np.random.default_rng(1)
    # the old objective: a 10 s window judged by completions vs sends, first to last
    short = _poisson(rate, 10.0)
    old_window = _records(short, np.zeros(len(short)), rng.integers(32, 513, len(short)))
    assert completion_rate_rps(old_window) < 0.9 * send_rate_rps(old_window)  # "fell behind", wrongly
    # the steady-state window, sized from the latency (E2E p90 ~ 18 s): 36 s ramp, 180 s steady part
    load = _load()
    latency = float(np.percentile(TTFT_MS / 1000 + TPOT_MS / 1000 * (rng.integers(32, 513, 1000) - 1), 90))
    plan = plan_window(load, rate, latency, "probe")
    assert plan.send_s - plan.ramp_s >= 10 * latency
    sends = _poisson(rate, plan.schedule_s, seed=2)
    records = _records(sends, np.zeros(len(sends)), rng.integers(32, 513, len(sends)))
    _, summary, verdict = _judge(records, plan, load, rate)
    assert verdict.met, verdict.verdict
    assert abs(verdict.backlog_growth) < verdict.backlog_growth_limit and verdict.backlog_start > 50  # a high, level backlog
    assert summary.completed == verdict.steady_requests


def _fifo(sends: np.ndarray, service_s: float) -> np.ndarray:
    """Waits before service of one server taking `service_s` per request, first come first served."""
    waits = np.empty(len(sends))
    free = 0.0
    for i, send in enumerate(sends):
        start = max(send, free)
        waits[i] = start - send
        free = start + service_s
    return waits


def test_a_rate_above_capacity_falls_behind_although_its_percentiles_meet_the_slo() -> None:
    """A server completing 8 req/s offered 10: its queue grows by 2 a second; a lax SLO does not see it yet."""
    load = _load(slo_rate_window_s=20.0)
    plan = plan_window(load, 10.0, 1.0, "probe")
    sends = np.arange(0, plan.send_s, 0.1)
    records = _records(sends, _fifo(sends, 1 / 8), np.full(len(sends), 4))
    lax = SLO(ttft_ms=10_000, tpot_ms=50)
    _, summary, verdict = _judge(records, plan, load, 10.0, lax)
    assert slo_p99_verdict(summary, lax) is None  # the p99s alone would pass it
    assert not verdict.met and verdict.verdict.startswith("falls behind")
    assert verdict.backlog_growth == pytest.approx(2.0 * verdict.steady_s, rel=0.1)
    assert verdict.backlog_growth_limit == pytest.approx(max(2.0 * 10.0, BACKLOG_GROWTH_FRACTION * 180))
    # the same server offered 7 req/s keeps pace
    calm = np.arange(0, plan.send_s, 1 / 7)
    _, _, kept = _judge(_records(calm, _fifo(calm, 1 / 8), np.full(len(calm), 4)), plan, load, 7.0, lax)
    assert kept.met and abs(kept.backlog_growth) < 1.0


def test_steady_requests_cut_at_the_drain_limit_count_as_failed() -> None:
    load = _load(slo_rate_window_s=10.0)
    plan = plan_window(load, 10.0, 0.5, "probe")
    sends = np.arange(0, plan.send_s, 0.1)
    records = _records(sends, np.zeros(len(sends)), np.full(len(sends), 4))
    records[-5:] = [r.model_copy(update={"success": False, "unfinished": True, "e2el_ms": None, "error": "unfinished"}) for r in records[-5:]]
    _, summary, verdict = _judge(records, plan, load, 10.0)
    assert verdict.unfinished == 5 and summary.failed == 5 and verdict.drain_s == pytest.approx(plan.drain_limit_s)
    assert not verdict.met and verdict.verdict.startswith("error rate")
