"""Overload: four times the sustainable request rate for 60 s against a real `autotune serve`.

The simulated engine is made slow (a 20 ms step, two sequences at a time) so that 4x is a few dozen
requests a second, within a 2-core CI box. The sustainable rate is measured first (closed loop), then
an open loop sends at 4x for 60 s. Checked: every request is answered (200, or 429/503 with
Retry-After), the waiting queue stays within max_queued_requests, accepted requests keep a bounded
latency, /health answers all along, the server's memory does not grow, and once the load drops a
normal request succeeds within seconds and a gentle load is served in full.
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import psutil
import pytest
from reliability.reliability_record import Outcome, current_test, record_outcome
from reliability_sim import MODEL_NAME, write_config, write_profile

from helpers.servers import running_server_process
from autotune.tune.server_process import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

OVERLOAD_FACTOR = 4.0
LOAD_DURATION_S = float(os.environ.get("AUTOTUNE_OVERLOAD_S", "60"))  # the issue asks 60 s; override to try
MAX_NUM_SEQS = 2
MAX_QUEUED = 8
REQUEST = {
    "model": MODEL_NAME,
    "messages": [{"role": "user", "content": "Describe a small red house next to a tree."}],
    "max_tokens": 16,
    "ignore_eos": True,
}
_WAITING = re.compile(r'^vllm:num_requests_waiting\{engine="simulated"\} (\S+)$', re.MULTILINE)


@dataclass
class Answer:
    status: int | None  # None: no answer (timeout, reset)
    latency_s: float
    retry_after: str | None = None
    error: str | None = None


@dataclass
class Observed:
    answers: list[Answer] = field(default_factory=list)
    health: list[tuple[int | None, float]] = field(default_factory=list)
    waiting: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("overload")
    profile = write_profile(folder / "slow.json", gpu_costs={"step_overhead_ms": 20.0})
    config = write_config(
        folder / "tuned.yaml",
        profile=profile,
        engine={"max_num_seqs": MAX_NUM_SEQS},
        serving={"max_queued_requests": MAX_QUEUED},
    )
    with running_server_process(["--config", str(config)]) as process:
        yield process


async def _send(client: httpx.AsyncClient) -> Answer:
    started = time.monotonic()
    try:
        response = await client.post("/v1/chat/completions", json=REQUEST)
    except httpx.HTTPError as exc:
        return Answer(None, time.monotonic() - started, error=f"{type(exc).__name__}: {exc}")
    return Answer(response.status_code, time.monotonic() - started, response.headers.get("retry-after"))


async def _sustainable_rate(client: httpx.AsyncClient, duration_s: float = 4.0) -> float:
    """Completed requests per second with the batch kept full (closed loop, no 429s)."""
    done = 0
    deadline = time.monotonic() + duration_s

    async def stream() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            answer = await _send(client)
            assert answer.status == 200, answer
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(stream() for _ in range(MAX_NUM_SEQS + 1)))
    return done / (time.monotonic() - started)


async def _open_loop(client: httpx.AsyncClient, rate_rps: float, duration_s: float) -> list[Answer]:
    """Send at a constant rate, never waiting for answers; returns every answer."""
    tasks: list[asyncio.Task[Answer]] = []
    started = time.monotonic()
    count = int(rate_rps * duration_s)
    for index in range(count):
        delay = started + index / rate_rps - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(_send(client)))
    return list(await asyncio.gather(*tasks))


async def _watch(server: ServerProcess, observed: Observed, stop: asyncio.Event) -> None:
    """/health every 0.25 s, the waiting queue (from /metrics) every 0.25 s, the server's RSS every 1 s."""
    process = psutil.Process(server.pid)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=5.0, trust_env=False) as client:
        tick = 0
        while not stop.is_set():
            started = time.monotonic()
            try:
                health = await client.get("/health")
                observed.health.append((health.status_code, time.monotonic() - started))
            except httpx.HTTPError:
                observed.health.append((None, time.monotonic() - started))
            try:
                match = _WAITING.search((await client.get("/metrics")).text)
                if match:
                    observed.waiting.append(float(match.group(1)))
            except httpx.HTTPError:
                pass
            if tick % 4 == 0:
                observed.rss_mib.append(process.memory_info().rss / 2**20)
            tick += 1
            await asyncio.sleep(0.25)


async def _overload(server: ServerProcess) -> dict[str, object]:
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60.0, limits=limits, trust_env=False) as client:
        sustainable = await _sustainable_rate(client)
        rss_before = psutil.Process(server.pid).memory_info().rss / 2**20
        observed = Observed()
        stop = asyncio.Event()
        watcher = asyncio.create_task(_watch(server, observed, stop))
        load_started = time.monotonic()
        observed.answers = await _open_loop(client, OVERLOAD_FACTOR * sustainable, LOAD_DURATION_S)
        load_s = time.monotonic() - load_started
        ended = time.monotonic()
        while (answer := await _send(client)).status != 200:
            assert time.monotonic() - ended < 30, answer
            await asyncio.sleep(0.1)
        recovery_s = time.monotonic() - ended
        gentle = await _open_loop(client, sustainable / 2, 3.0)
        stop.set()
        await watcher
    return {
        "sustainable": sustainable, "observed": observed, "load_s": load_s, "recovery_s": recovery_s,
        "gentle": gentle, "rss_before": rss_before,
    }


def test_four_times_the_sustainable_rate_for_a_minute(server: ServerProcess) -> None:
    run = asyncio.run(_overload(server))
    sustainable = float(run["sustainable"])  # type: ignore[arg-type]
    observed: Observed = run["observed"]  # type: ignore[assignment]
    gentle: list[Answer] = run["gentle"]  # type: ignore[assignment]
    answers = observed.answers
    served = [a for a in answers if a.status == 200]
    refused = [a for a in answers if a.status in (429, 503)]
    unanswered = [a for a in answers if a.status is None]
    unexpected = [a for a in answers if a.status not in (200, 429, 503, None)]
    no_retry_after = [a for a in refused if not (a.retry_after or "").isdigit() or int(a.retry_after or 0) < 1]
    health_bad = [h for h in observed.health if h[0] != 200]
    rss = observed.rss_mib
    third = max(1, len(rss) // 3)
    latency_bound_s = 1.5 * (MAX_QUEUED + MAX_NUM_SEQS) / sustainable + 1.0
    p99_served_s = statistics.quantiles([a.latency_s for a in served], n=100)[98] if len(served) > 1 else 0.0
    record_outcome(
        Outcome(
            scenario=f"{OVERLOAD_FACTOR:g}x the sustainable request rate for {LOAD_DURATION_S:g} s",
            category="load",
            tried=len(answers),
            unit="requests",
            lost=len(unanswered) + len(unexpected) + len(no_retry_after),
            lost_meaning="a request with no answer, a status other than 200/429/503, or a refusal without Retry-After",
            expected="bounded queue; 429 + Retry-After beyond it; /health answers; memory flat; recovery in seconds",
            test=current_test(),
            details={
                "sustainable_rps": round(sustainable, 2),
                "offered_rps": round(OVERLOAD_FACTOR * sustainable, 2),
                "served": len(served),
                "refused_429_503": len(refused),
                "served_rps": round(len(served) / float(run["load_s"]), 2),  # type: ignore[arg-type]
                "served_latency_p99_s": round(p99_served_s, 2),
                "max_waiting": max(observed.waiting, default=0),
                "max_queued_requests": MAX_QUEUED,
                "health_checks": len(observed.health),
                "health_failures": len(health_bad),
                "health_latency_max_s": round(max((h[1] for h in observed.health), default=0.0), 3),
                "rss_before_mib": round(float(run["rss_before"]), 1),  # type: ignore[arg-type]
                "rss_max_mib": round(max(rss, default=0.0), 1),
                "recovery_s": round(float(run["recovery_s"]), 2),  # type: ignore[arg-type]
                "gentle_after_served": sum(a.status == 200 for a in gentle),
                "gentle_after_sent": len(gentle),
            },
        )
    )
    assert not unanswered and not unexpected, (unanswered[:5], unexpected[:5])
    assert not no_retry_after, no_retry_after[:5]
    assert len(refused) > len(answers) / 2  # it really was overloaded
    assert len(served) / float(run["load_s"]) > 0.6 * sustainable  # no collapse: the engine kept serving  # type: ignore[arg-type]
    assert max(observed.waiting) <= MAX_QUEUED
    assert p99_served_s <= latency_bound_s, (p99_served_s, latency_bound_s)
    assert len(observed.health) > LOAD_DURATION_S and not health_bad, health_bad[:5]
    assert max(h[1] for h in observed.health) < 1.0
    assert max(rss) - float(run["rss_before"]) < 64  # type: ignore[arg-type]
    assert max(rss[-third:]) <= max(rss[:third]) + 16, rss  # no growth over the minute
    assert float(run["recovery_s"]) < 5.0  # type: ignore[arg-type]
    assert all(a.status == 200 for a in gentle), [a for a in gentle if a.status != 200][:5]
