"""The load generator closes an idle connection before the server does: otherwise a request sent on a connection the
server is closing fails with "Connection reset by peer" (the first minute of the H100 soak of 2026-12-05)."""

from __future__ import annotations

import asyncio

import uvicorn

from autotune.bench.worker import Worker, WorkerPlan


def test_client_keepalive_ends_before_the_servers() -> None:
    plan = WorkerPlan(worker_id=0, chat_url="http://127.0.0.1:9/v1/chat/completions", headers={}, requests=[])

    async def connector_keepalive_s() -> float:
        async with Worker(plan) as worker:
            assert worker._session is not None
            return float(worker._session.connector._keepalive_timeout)  # type: ignore[union-attr]

    client_s = asyncio.run(connector_keepalive_s())
    server_s = uvicorn.Config(app=None).timeout_keep_alive  # vLLM's VLLM_HTTP_TIMEOUT_KEEP_ALIVE defaults to 5 s too
    assert 0 < client_s <= server_s - 0.5
