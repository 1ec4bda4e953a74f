"""Summary figures: pure functions of request records (warm-up records are ignored).

Definitions follow `vllm bench serve` (vllm/benchmarks/serve.py::calculate_metrics):
- duration: from the first send to the last completion of the measured requests;
- TPOT of a request = (e2el - ttft) / (output_tokens - 1), for output_tokens > 1;
- goodput: successful requests meeting every SLO that is set (ttft, tpot, e2el; a request with
  one output token has TPOT 0 for this test), divided by the duration; None when no SLO is set;
- ITL: every inter-chunk gap of every successful request, pooled;
- percentiles: numpy's linear interpolation; a figure with no data is None, never 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from autotune.bench.schemas import SLO, RequestRecord, Stats, Summary


def describe(values: Sequence[float]) -> Stats:
    if len(values) == 0:
        return Stats()
    data = np.asarray(values, dtype=float)
    p50, p90, p95, p99 = np.percentile(data, [50, 90, 95, 99])
    return Stats(
        mean=float(data.mean()), p50=float(p50), p90=float(p90), p95=float(p95), p99=float(p99), max=float(data.max())
    )


def measured(records: Iterable[RequestRecord]) -> list[RequestRecord]:
    """The records the figures are computed from: no warm-up, and of a steady-state window only the steady part."""
    return [record for record in records if not record.warmup and record.window_part in (None, "steady")]


def tpot_ms(record: RequestRecord) -> float | None:
    """(e2el - ttft) / (output_tokens - 1); None when it is undefined (failure, <= 1 token)."""
    if not record.success or record.e2el_ms is None or record.ttft_ms is None:
        return None
    if record.output_tokens is None or record.output_tokens <= 1:
        return None
    return (record.e2el_ms - record.ttft_ms) / (record.output_tokens - 1)


def window_s(records: Sequence[RequestRecord]) -> float:
    """From the first send to the last end (send + e2el) among the records."""
    if not records:
        return 0.0
    start = min(record.send_time_s for record in records)
    end = max(record.send_time_s + (record.e2el_ms or 0.0) / 1000.0 for record in records)
    return max(0.0, end - start)


def is_good(record: RequestRecord, slo: SLO) -> bool:
    """A successful request meeting every SLO that is set (vllm bench --goodput)."""
    if not record.success:
        return False
    if slo.ttft_ms is not None and (record.ttft_ms is None or record.ttft_ms > slo.ttft_ms):
        return False
    if slo.tpot_ms is not None and (tpot_ms(record) or 0.0) > slo.tpot_ms:
        return False
    if slo.e2el_ms is not None and (record.e2el_ms is None or record.e2el_ms > slo.e2el_ms):
        return False
    return True


def slo_is_set(slo: SLO) -> bool:
    return any(value is not None for value in (slo.ttft_ms, slo.tpot_ms, slo.e2el_ms))


def completion_rate_rps(records: Sequence[RequestRecord]) -> float | None:
    """Rate at which successful requests finished, first to last completion (independent of latency).

    In an open-loop run a server that keeps up completes requests at the offered rate; one that
    does not completes them at its own, lower, rate (the queue grows). None with < 2 completions.
    The sweep's stop rule uses it. Over a short window it misjudges long requests (the last ones end long after
    the last send, which stretches the completions' span): the slo_rate objective judges the backlog instead
    (`autotune.bench.steady`).
    """
    ends = sorted(r.send_time_s + (r.e2el_ms or 0.0) / 1000.0 for r in measured(records) if r.success)
    if len(ends) < 2 or ends[-1] <= ends[0]:
        return None
    return (len(ends) - 1) / (ends[-1] - ends[0])


def send_rate_rps(records: Sequence[RequestRecord]) -> float | None:
    """Rate at which the measured requests were actually sent, first to last send."""
    sends = sorted(r.send_time_s for r in measured(records))
    if len(sends) < 2 or sends[-1] <= sends[0]:
        return None
    return (len(sends) - 1) / (sends[-1] - sends[0])


def compute_summary(
    records: Sequence[RequestRecord],
    slo: SLO | None = None,
    *,
    offered_rate_rps: float | None = None,
    concurrency: int | None = None,
) -> Summary:
    """Throughput, latency distributions, error rate and goodput of the measured records."""
    slo = slo or SLO()
    window = measured(records)
    ok = [record for record in window if record.success]
    duration = window_s(window)
    tpots = [value for value in (tpot_ms(record) for record in ok) if value is not None]
    output_tokens = sum(record.output_tokens or 0 for record in ok)
    input_tokens = sum(record.input_tokens or 0 for record in ok)
    good = sum(1 for record in ok if is_good(record, slo))

    def per_s(count: float) -> float:
        return count / duration if duration > 0 else 0.0

    return Summary(
        offered_rate_rps=offered_rate_rps,
        concurrency=concurrency,
        completed=len(ok),
        failed=len(window) - len(ok),
        duration_s=duration,
        throughput_rps=per_s(len(ok)),
        output_tok_s=per_s(output_tokens),
        input_tok_s=per_s(input_tokens),
        goodput_rps=per_s(good) if slo_is_set(slo) else None,
        error_rate=(len(window) - len(ok)) / len(window) if window else 0.0,
        ttft_ms=describe([record.ttft_ms for record in ok if record.ttft_ms is not None]),
        tpot_ms=describe(tpots),
        itl_ms=describe([gap for record in ok for gap in record.itl_ms]),
        e2el_ms=describe([record.e2el_ms for record in ok if record.e2el_ms is not None]),
    )


SLO_RATE_MAX_ERROR_RATE = 0.01


def slo_p99_verdict(summary: Summary, slo: SLO) -> str | None:
    """None when the window's figures meet the SLO's p99s, else why not: no completion, an error rate above 1%, or a
    p99 set in the SLO (TTFT, TPOT, end-to-end) above its bound.

    Whether the window kept pace with its rate is judged apart (its backlog, `autotune.bench.steady`): a p99 over the
    requests that finished says nothing of the queue left behind.
    """
    if summary.completed == 0:
        return "no request completed"
    if summary.error_rate > SLO_RATE_MAX_ERROR_RATE:
        return f"error rate {100 * summary.error_rate:.1f}% > {100 * SLO_RATE_MAX_ERROR_RATE:.0f}%"
    for name in ("ttft_ms", "tpot_ms", "e2el_ms"):
        bound = getattr(slo, name)
        p99 = getattr(summary, name).p99
        if bound is not None and (p99 is None or p99 > bound):
            return f"{name} p99 {p99 if p99 is None else round(p99, 1)} > {bound:g}"
    return None
