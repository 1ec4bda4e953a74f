"""The streaming client against the fake server: timings, failures as data, concurrency."""

from __future__ import annotations

import asyncio
import json
import socket

import aiohttp
import httpx
import pytest

from autotune.bench.client import PreparedRequest, stream_chat
from autotune.bench.runner import run_benchmark_sync
from autotune.bench.schemas import SLO, LoadSpec
from autotune.bench.workload import Workload, resolve_workload


def _request(index: int = 0, max_tokens: int = 8) -> PreparedRequest:
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens, "stream": True}
    return PreparedRequest(index=index, body=json.dumps(body).encode(), max_tokens=max_tokens)


def _text_workload(output_tokens: int) -> Workload:
    data = resolve_workload("text-chat").model_dump()
    data["synthetic"].update(input_tokens=16, output_tokens=output_tokens)
    return Workload.model_validate(data)


@pytest.mark.parametrize("role_chunk", ["at once", "with the first token (as vLLM)"])
def test_ttft_and_inter_token_gaps_match_the_injected_delays(start_fake_server, role_chunk: str) -> None:
    flags = [] if role_chunk == "at once" else ["--role-with-first-token"]
    url = start_fake_server("--ttft-ms", "50", "--itl-ms", "10", *flags)
    result = run_benchmark_sync(
        url, _text_workload(20), LoadSpec(mode="concurrency", concurrency=2, num_requests=6), SLO(), telemetry=False
    )
    summary = result.summary
    assert summary.completed == 6 and summary.failed == 0
    # the role-only chunk sent at once must not count as the first token
    assert 50.0 <= summary.ttft_ms.p50 <= 65.0 and summary.ttft_ms.mean <= 65.0
    assert 9.5 <= summary.itl_ms.p50 <= 15.0 and summary.itl_ms.mean <= 15.0
    assert 9.5 <= summary.tpot_ms.mean <= 15.0
    for record in result.requests:
        assert record.output_tokens == 20 and record.input_tokens == 42 and len(record.itl_ms) == 19
        assert record.e2el_ms >= record.ttft_ms + sum(record.itl_ms) - 1.0


@pytest.mark.parametrize("status", [500, 429])
def test_http_errors_become_failed_records(start_fake_server, status: int) -> None:
    url = start_fake_server("--fail-every", "2", "--fail-status", str(status))
    result = run_benchmark_sync(url, _text_workload(4), LoadSpec(mode="concurrency", concurrency=2, num_requests=8), SLO(), telemetry=False)
    failed = [r for r in result.requests if not r.success]
    assert len(failed) == 4 and result.summary.failed == 4 and result.summary.error_rate == pytest.approx(0.5)
    assert all(r.error == f"HTTP {status}: injected failure {status}" for r in failed)
    assert all(r.ttft_ms is None for r in failed)


def test_dropped_connections_become_failed_records(start_fake_server) -> None:
    url = start_fake_server("--drop-every", "3", "--drop-after-tokens", "2")
    result = run_benchmark_sync(url, _text_workload(6), LoadSpec(mode="concurrency", concurrency=3, num_requests=9), SLO(), telemetry=False)
    failed = [r for r in result.requests if not r.success]
    assert len(failed) == 3 and result.summary.completed == 6
    for record in failed:
        assert record.error and ("Payload" in record.error or "dropped" in record.error or "Disconnected" in record.error)
        assert record.ttft_ms is not None  # it got two tokens before the drop


def test_stream_chat_never_raises_on_a_closed_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends

    async def go():
        async with aiohttp.ClientSession() as session:
            return await stream_chat(session, f"http://127.0.0.1:{port}/v1/chat/completions", _request(), headers={}, t0=0.0)

    outcome = asyncio.run(go())
    assert not outcome.success and "Connect" in (outcome.error or "")


def test_closed_loop_keeps_exactly_the_concurrency(start_fake_server) -> None:
    url = start_fake_server("--ttft-ms", "20", "--itl-ms", "5")
    result = run_benchmark_sync(url, _text_workload(8), LoadSpec(mode="concurrency", concurrency=3, num_requests=12, warmup_requests=2), SLO(), telemetry=False)
    stats = httpx.get(f"{url}/stats").json()
    assert stats["received"] == 14 and stats["max_in_flight"] == 3 and stats["models"] == ["fake-model"]
    warmups = [r for r in result.requests if r.warmup]
    assert len(warmups) == 2 and result.summary.completed == 12  # warm-up recorded, not measured
    assert len({r.index for r in result.requests}) == 14


def test_open_loop_sends_on_schedule(start_fake_server) -> None:
    url = start_fake_server("--ttft-ms", "5", "--itl-ms", "5")
    load = LoadSpec(mode="rate", rate_rps=20.0, arrival="constant", num_requests=10)
    result = run_benchmark_sync(url, _text_workload(4), load, SLO(), telemetry=False)
    sends = sorted(r.send_time_s for r in result.requests)
    for expected, actual in zip([i / 20.0 for i in range(10)], sends, strict=True):
        assert expected <= actual + 0.001 and actual - expected < 0.03
    assert result.summary.offered_rate_rps == 20.0 and result.summary.client.send_lag_p99_ms < 30.0


def test_duration_bounded_closed_loop_never_sends_a_body_twice(start_fake_server) -> None:
    # a body sent twice is a prefix-cache hit on the server: the loop ends early once its distinct requests are used
    from autotune.bench.runner import CLOSED_LOOP_POOL_MIN

    url = start_fake_server("--ttft-ms", "1", "--itl-ms", "1")
    load = LoadSpec(mode="concurrency", concurrency=2, num_requests=None, duration_s=0.6)
    result = run_benchmark_sync(url, _text_workload(3), load, SLO(), telemetry=False)
    assert result.summary.completed == CLOSED_LOOP_POOL_MIN  # a 1 ms server uses them all well before 0.6 s
    assert len({r.index for r in result.requests}) == len(result.requests)
    assert max(r.send_time_s for r in result.requests) < 0.6
