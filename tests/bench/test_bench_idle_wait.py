"""A window starts only once the server has finished the requests of the window before it (or says it had not)."""

from __future__ import annotations

import asyncio

import httpx

from autotune.bench.server_metrics import wait_until_idle


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
