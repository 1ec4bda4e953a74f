"""Property-based fuzz of the serving API: >= 1,000 generated requests against a real `autotune serve`.

No 5xx, no dropped connection, every error OpenAI-style JSON with the engine header, the key checked
on every route but /health, and afterwards the server is alive, healthy and serves a normal request.
(The app publishes no OpenAPI schema, so requests come from hypothesis strategies, not schemathesis.)
"""

from __future__ import annotations

import collections
import json
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest
from reliability_fuzz import FuzzRequest, fuzz_requests
from hypothesis import HealthCheck, given, settings
from reliability.reliability_record import Outcome, current_test, record_outcome
from reliability_sim import MODEL_NAME, fast_profile, write_config

from helpers.servers import running_server_process
from autotune.tune.server_process import ServerProcess

API_KEY = "fuzz-key-0123456789"
MIN_REQUESTS = 1000
ERROR_KEYS = {"message", "type", "param", "code"}


class FuzzLog:
    def __init__(self) -> None:
        self.sent = 0
        self.statuses: collections.Counter[int] = collections.Counter()
        self.failures: list[str] = []
        self.slowest_s = 0.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("fuzz")
    config = write_config(
        folder / "tuned.yaml",
        profile=fast_profile(folder / "profile.json"),
        engine={"max_num_seqs": 16},
        serving={
            "max_request_bytes": 300_000,
            "max_image_bytes": 200_000,
            "max_image_pixels": 2_000_000,
            "image_fetch_timeout_s": 1.0,
            "max_images_per_request": 2,
        },
    )
    with running_server_process(["--config", str(config)], env={"AUTOTUNE_API_KEY": API_KEY}) as process:
        yield process


def _check(request: FuzzRequest, response: httpx.Response) -> str | None:
    """Why this response is wrong, or None."""
    status = response.status_code
    path = response.request.url.path
    if status >= 500:
        return f"{status} for {request.method} {path}: {response.text[:300]}"
    if response.headers.get("x-autotune-engine") != "simulated":
        return f"no x-autotune-engine header on {status} {request.method} {path}"
    if not request.authorized and path != "/health" and status != 401:
        return f"{status} without a valid key on {request.method} {path}"
    if status >= 400 and request.method != "HEAD":
        try:
            error = response.json()["error"]
        except (ValueError, KeyError, TypeError):
            return f"{status} is not an OpenAI-style error: {response.text[:300]}"
        if set(error) != ERROR_KEYS or not isinstance(error["message"], str) or not error["message"]:
            return f"{status} error body has keys {sorted(error)}: {response.text[:300]}"
    if status == 200 and request.method == "POST" and path == "/v1/chat/completions":
        return _check_completion(response)
    return None


def _check_completion(response: httpx.Response) -> str | None:
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        events = [block.removeprefix("data: ") for block in response.text.split("\n\n") if block.strip()]
        if not events or events[-1] != "[DONE]":
            return f"stream did not end with [DONE]: {response.text[-300:]}"
        for event in events[:-1]:
            if "error" in json.loads(event):
                return f"stream carried an error: {event[:300]}"
        return None
    body = response.json()
    if not isinstance(body["choices"][0]["message"]["content"], str) or body["usage"]["completion_tokens"] < 1:
        return f"completion without content or tokens: {response.text[:300]}"
    return None


def test_fuzzed_requests_never_get_a_5xx_and_the_server_stays_healthy(server: ServerProcess) -> None:
    log = FuzzLog()
    rss_before_mib = psutil.Process(server.pid).memory_info().rss / 2**20

    with httpx.Client(base_url=server.base_url, timeout=20.0, trust_env=False) as client:

        @settings(
            max_examples=MIN_REQUESTS + 50,
            deadline=None,
            derandomize=True,  # the same requests on every run (CI); change the strategies to explore more
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
        )
        @given(request=fuzz_requests(MODEL_NAME, API_KEY))
        def one_request(request: FuzzRequest) -> None:
            started = time.monotonic()
            try:
                # the path as drawn, byte for byte: a relative "//::" would be read as a host, not as a path
                url = client.base_url.copy_with(raw_path=request.path.encode())
                response = client.request(request.method, url, headers=request.headers, content=request.body)
            except httpx.HTTPError as exc:
                log.sent += 1
                log.failures.append(f"{request.method} {request.path}: no answer ({type(exc).__name__}: {exc})")
                return
            log.sent += 1
            log.slowest_s = max(log.slowest_s, time.monotonic() - started)
            log.statuses[response.status_code] += 1
            problem = _check(request, response)
            if problem is not None:
                log.failures.append(problem)

        one_request()

        health = client.get("/health")
        normal = client.post(
            "/v1/chat/completions",
            headers={"Authorization": f"Bearer {API_KEY}"},
            json={"model": MODEL_NAME, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4},
        )
    rss_after_mib = psutil.Process(server.pid).memory_info().rss / 2**20
    server_log = server.log_tail(100_000)
    record_outcome(
        Outcome(
            scenario="Fuzzed HTTP requests to the serving API",
            category="bad input",
            tried=log.sent,
            unit="requests",
            lost=len(log.failures) + (0 if server.alive() and health.status_code == 200 else 1),
            lost_meaning="a 5xx, a dropped connection, a non-OpenAI error body, a key not checked, or a dead server",
            expected="4xx with an OpenAI-style error naming the problem; healthy server afterwards",
            test=current_test(),
            details={
                **{f"status_{code}": count for code, count in sorted(log.statuses.items())},
                "slowest_request_s": round(log.slowest_s, 3),
                "rss_growth_mib": round(rss_after_mib - rss_before_mib, 1),
            },
        )
    )
    assert log.sent >= MIN_REQUESTS
    assert not log.failures, "\n".join(log.failures[:20])
    assert server.alive() and health.status_code == 200
    assert normal.status_code == 200, normal.text
    assert "Traceback" not in server_log and "internal error" not in server_log, server_log[-3000:]
    assert set(log.statuses) & {400, 401, 404} and log.statuses[200] > 50  # the mix reached both sides
