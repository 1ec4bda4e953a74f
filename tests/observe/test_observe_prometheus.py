"""Prometheus scraping: the figures of a window, and a window starting only once the server has finished the requests
of the window before it (or says it had not)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from autotune.observe.prometheus import parse_metrics, summarize_window, wait_until_idle


def _server(in_flight: list[float]) -> httpx.AsyncClient:
    """/metrics reporting `in_flight` running requests, one value per scrape (the last one repeats)."""
    scrapes = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        value = in_flight[min(scrapes["n"], len(in_flight) - 1)]
        scrapes["n"] += 1
        text = f"vllm:num_requests_running{{engine=\"0\"}} {value}\nvllm:num_requests_waiting{{engine=\"0\"}} 0\n"
        return httpx.Response(200, text=text)

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def test_waits_until_the_previous_windows_requests_are_done() -> None:
    async def main() -> tuple[float, float | None]:
        async with _server([40, 12, 3, 0]) as client:
            return await wait_until_idle(client, "http://server/metrics", poll_s=0.01)

    waited, left = asyncio.run(main())
    assert left == 0 and waited > 0


def test_gives_up_after_the_limit_and_says_how_many_were_left() -> None:
    async def main() -> tuple[float, float | None]:
        async with _server([7]) as client:
            return await wait_until_idle(client, "http://server/metrics", limit_s=0.05, poll_s=0.01)

    waited, left = asyncio.run(main())
    assert left == 7 and waited >= 0.05


def test_a_server_without_request_gauges_is_not_waited_for() -> None:
    async def main() -> tuple[float, float | None]:
        transport = httpx.MockTransport(lambda request: httpx.Response(404))
        async with httpx.AsyncClient(transport=transport) as client:
            return await wait_until_idle(client, "http://server/metrics")

    assert asyncio.run(main()) == (0.0, None)


def test_server_metrics_vllm_and_ours() -> None:
    before = parse_metrics(
        "# TYPE vllm:prefix_cache_queries counter\nvllm:prefix_cache_queries_total{engine=\"0\"} 100\n"
        "# TYPE vllm:prefix_cache_hits counter\nvllm:prefix_cache_hits_total{engine=\"0\"} 10\n"
        "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{engine=\"0\"} 1\nvllm:num_requests_waiting{engine=\"1\"} 2\n"
    )
    assert before["num_requests_waiting"] == 3.0  # engines summed
    after = {**before, "prefix_cache_queries_total": 300.0, "prefix_cache_hits_total": 110.0}
    ours = parse_metrics("# TYPE autotune_kv_cache_usage_perc gauge\nautotune_kv_cache_usage_perc 0.25\n")
    summary = summarize_window(before, [before, {**before, **ours, "num_requests_waiting": 5.0}], after)
    assert summary["num_requests_waiting_mean"] == 4.0 and summary["num_requests_waiting_max"] == 5.0
    assert summary["kv_cache_usage_perc_max"] == 0.25
    assert summary["prefix_cache_hit_rate"] == pytest.approx(100 / 200)
    assert parse_metrics("not prometheus {{{") == {}
