"""The warm-up burst of `serving.warmup` through vLLM's middleware, on a loopback uvicorn server with a stand-in app.

What matters of vLLM's app here: it runs a lifespan, answers /health, and answers (or refuses) chat completions. The
stand-in holds every chat completion until the test lets it go, so /health is seen refusing while the burst is out.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from autotune.config import EngineConfig, ServingSettings, TunedConfig
from serving.engines.vllm_launcher import free_port, write_config_json
from serving.vllm_middleware import AutotuneMiddleware
from serving.warmup import MAX_OUTPUT_TOKENS, MIN_OUTPUT_TOKENS, loopback_base_url

REQUESTS = 12
API_KEY = "warm-key"


class StandIn:
    def __init__(self, refuse_images: bool) -> None:
        self.refuse_images = refuse_images
        self.bodies: list[dict] = []
        self.keys: list[str | None] = []
        self.release = threading.Event()

    def app(self) -> Starlette:
        async def chat(request: Request) -> JSONResponse:
            body = json.loads(await request.body())
            self.keys.append(request.headers.get("authorization"))
            if self.refuse_images and isinstance(body["messages"][0]["content"], list):
                return JSONResponse({"error": {"message": "this model does not take image inputs"}}, status_code=400)
            self.bodies.append(body)
            while not self.release.is_set():
                await asyncio.sleep(0.02)
            return JSONResponse({"choices": [{"message": {"content": "ok"}}]})

        async def health(request: Request) -> JSONResponse:
            return JSONResponse({})

        app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/health", health)])
        app.add_middleware(AutotuneMiddleware)  # as vLLM adds a --middleware class
        return app


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    started: list[tuple[uvicorn.Server, threading.Thread, Path]] = []

    def start(stand_in: StandIn, **serving: object) -> str:
        port = free_port("127.0.0.1")
        tuned = TunedConfig(
            engine_config=EngineConfig(model="/models/m", served_model_name="served-m"),
            serving=ServingSettings(port=port, **serving),  # type: ignore[arg-type]
        )
        path = Path(write_config_json(tuned))
        monkeypatch.setenv("AUTOTUNE_CONFIG_JSON", str(path))
        monkeypatch.setenv("AUTOTUNE_API_KEY", API_KEY)
        server = uvicorn.Server(uvicorn.Config(stand_in.app(), host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        started.append((server, thread, path))
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread, path in started:
        server.should_exit = True
        thread.join(timeout=10)
        path.unlink(missing_ok=True)


def _health_until(url: str, status: int, timeout_s: float = 20.0) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            response = httpx.get(f"{url}/health", timeout=2)
            if response.status_code == status:
                return response
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"/health never answered {status}"
        time.sleep(0.05)


def _first_health(url: str, timeout_s: float = 20.0) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code
        except httpx.TransportError:
            assert time.monotonic() < deadline, "the server never listened"
            time.sleep(0.05)


def _images(body: dict) -> list[tuple[int, int]]:
    content = body["messages"][0]["content"]
    if isinstance(content, str):
        return []
    sizes = []
    for part in content:
        if part["type"] == "image_url":
            data = base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
            sizes.append(Image.open(io.BytesIO(data)).size)
    return sizes


def test_health_refuses_until_the_burst_is_answered_and_the_burst_spreads_lengths_and_images(serve) -> None:  # type: ignore[no-untyped-def]
    stand_in = StandIn(refuse_images=False)
    url = serve(stand_in, warmup_requests=REQUESTS, api_key=API_KEY)
    refused = _health_until(url, 503)
    assert "warming up" in refused.json()["error"]["message"]
    deadline = time.monotonic() + 20
    while len(stand_in.bodies) < REQUESTS:  # the whole burst is out at once, each request held by the stand-in
        assert time.monotonic() < deadline, len(stand_in.bodies)
        time.sleep(0.05)
    assert _health_until(url, 503).status_code == 503  # still held: still not ready
    stand_in.release.set()
    _health_until(url, 200)

    bodies = stand_in.bodies
    assert len(bodies) == REQUESTS and {b["model"] for b in bodies} == {"served-m"}
    assert set(stand_in.keys) == {f"Bearer {API_KEY}"}
    outputs = sorted(b["max_tokens"] for b in bodies)
    assert outputs[0] == MIN_OUTPUT_TOKENS and outputs[-1] == MAX_OUTPUT_TOKENS and len(set(outputs)) == REQUESTS
    assert all(b["ignore_eos"] is True for b in bodies)
    sizes = [size for b in bodies for size in _images(b)]
    assert len(sizes) == REQUESTS // 2 and len(set(sizes)) == 2, sizes
    assert len({len(json.dumps(b["messages"])) for b in bodies if not _images(b)}) > 1  # prompt lengths vary


def test_a_model_that_refuses_images_is_warmed_with_text_and_no_warmup_means_ready_at_once(serve) -> None:  # type: ignore[no-untyped-def]
    stand_in = StandIn(refuse_images=True)
    stand_in.release.set()
    url = serve(stand_in, warmup_requests=REQUESTS)
    _health_until(url, 200)
    assert len(stand_in.bodies) == REQUESTS and not any(_images(b) for b in stand_in.bodies)

    cold = StandIn(refuse_images=False)
    cold_url = serve(cold, warmup_requests=0)
    assert _first_health(cold_url) == 200
    assert cold.bodies == []


@pytest.mark.parametrize(("host", "expected"), [("0.0.0.0", "http://127.0.0.1:8000"), ("::", "http://[::1]:8000"),
                                                ("10.1.2.3", "http://10.1.2.3:8000")])
def test_the_server_reaches_itself_on_loopback_when_bound_to_every_address(host: str, expected: str) -> None:
    assert loopback_base_url(host, 8000) == expected
