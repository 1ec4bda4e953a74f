"""Summary metrics as pure functions of hand-built records (vllm bench serve definitions)."""

from __future__ import annotations

import pytest

from autotune.bench.metrics import completion_rate_rps, compute_summary, send_rate_rps, tpot_ms
from autotune.bench.schemas import SLO, RequestRecord


def rec(index: int, send: float, ttft: float | None, e2el: float | None, out: int | None, ok: bool = True, **kw) -> RequestRecord:
    return RequestRecord(
        index=index, send_time_s=send, success=ok, ttft_ms=ttft, e2el_ms=e2el, output_tokens=out,
        input_tokens=10 if ok else None, error=None if ok else "HTTP 500: boom", **kw,
    )


RECORDS = [
    rec(0, 0.0, 100.0, 1100.0, 11),  # tpot 100: good for ttft<=200,tpot<=100
    rec(1, 0.5, 300.0, 1300.0, 11),  # ttft too slow
    rec(2, 1.0, 100.0, 2100.0, 11),  # tpot 200: too slow
    rec(3, 1.5, 150.0, 150.0, 1),    # one token: tpot counts as 0 for goodput
    rec(4, 2.0, None, 50.0, None, ok=False),
    rec(5, -5.0, 1.0, 2.0, 2, warmup=True),  # warm-up: ignored
]


def test_tpot_is_latency_after_first_token_per_extra_token() -> None:
    assert tpot_ms(RECORDS[2]) == pytest.approx((2100 - 100) / 10)
    assert tpot_ms(RECORDS[3]) is None and tpot_ms(RECORDS[4]) is None


def test_goodput_counts_requests_meeting_every_slo() -> None:
    summary = compute_summary(RECORDS, SLO(ttft_ms=200, tpot_ms=100))
    duration = 3.1  # first send 0.0 to the last end: request 2 sent at 1.0 s, 2.1 s long
    assert summary.duration_s == pytest.approx(duration)
    assert summary.goodput_rps == pytest.approx(2 / duration)  # requests 0 and 3
    assert compute_summary(RECORDS, SLO(e2el_ms=1200)).goodput_rps == pytest.approx(2 / duration)  # 0 and 3
    assert compute_summary(RECORDS, SLO()).goodput_rps is None


def test_summary_counts_and_distributions_ignore_warmup_and_failures() -> None:
    summary = compute_summary(RECORDS, concurrency=4)
    assert (summary.completed, summary.failed, summary.concurrency) == (4, 1, 4)
    assert summary.error_rate == pytest.approx(1 / 5)
    assert summary.throughput_rps == pytest.approx(4 / 3.1)
    assert summary.output_tok_s == pytest.approx(34 / 3.1)
    assert summary.input_tok_s == pytest.approx(40 / 3.1)
    assert summary.ttft_ms.mean == pytest.approx((100 + 300 + 100 + 150) / 4)
    assert summary.ttft_ms.max == 300.0
    assert summary.tpot_ms.mean == pytest.approx((100 + 100 + 200) / 3)  # one-token request excluded
    assert summary.e2el_ms.p50 == pytest.approx(1200.0)


def test_itl_pooled_and_empty_figures_are_none() -> None:
    records = [rec(0, 0.0, 10.0, 40.0, 3, itl_ms=[10.0, 20.0]), rec(1, 0.1, 10.0, 40.0, 2, itl_ms=[30.0])]
    assert compute_summary(records).itl_ms.mean == pytest.approx(20.0)
    empty = compute_summary([rec(0, 0.0, None, 5.0, None, ok=False)])
    assert empty.ttft_ms.mean is None and empty.throughput_rps == 0.0 and empty.error_rate == 1.0


def test_send_and_completion_rates() -> None:
    records = [rec(i, i * 0.1, 5.0, 1000.0, 2) for i in range(11)]  # 10/s sent, each 1 s long
    assert send_rate_rps(records) == pytest.approx(10.0)
    assert completion_rate_rps(records) == pytest.approx(10.0)  # independent of the 1 s latency
    slow = [rec(i, i * 0.1, 5.0, 1000.0 + 100.0 * i, 2) for i in range(11)]  # server falls behind
    assert completion_rate_rps(slow) == pytest.approx(5.0)
