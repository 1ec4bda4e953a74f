"""The API key: checked on every route but /health, for every method and path spelling, in constant time.

Against a real `autotune serve --engine simulated` (our app) and against the middleware that guards
vLLM's app (`serving.vllm_middleware`, on a stand-in app: vLLM itself checks its /v1 routes).
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from reliability.reliability_record import Outcome, current_test, record_outcome
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from autotune.config import EngineConfig, ServingSettings, TunedConfig
from helpers.servers import MODEL_DIR, running_server_process
from serving import asgi_guard
from serving.engines.vllm_launcher import write_config_json
from autotune.tune.server_process import ServerProcess
from serving.vllm_middleware import AutotuneMiddleware

API_KEY = "sec-key-7f3a9c1e5b"
PATHS = [
    "/v1/chat/completions", "/v1/models", "/metrics", "/autotune/config", "/v1/completions", "/", "/docs",
    "/openapi.json", "/health/", "/HEALTH", "//health", "/health/..", "/v1/../autotune/config", "/%68ealth",
    "/health%00", "/autotune/config/", "/autotune//config",
]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
BAD_AUTHORIZATION = [
    None, "", "Bearer", f"Bearer {API_KEY[:-1]}", f"Bearer {API_KEY}x", f"Bearer  x{API_KEY}",
    f"Basic {API_KEY}", f"Token {API_KEY}", API_KEY, f"Bearer {API_KEY.upper()}", "Bearer " + "A" * 10_000,
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = TunedConfig(engine="simulated", engine_config=EngineConfig(model=MODEL_DIR, max_model_len=2048)).write(
        tmp_path_factory.mktemp("auth") / "tuned.yaml"
    )
    with running_server_process(["--config", str(config)], env={"AUTOTUNE_API_KEY": API_KEY}) as process:
        yield process


def _request(client: httpx.Client, method: str, path: str, authorization: str | None) -> httpx.Response:
    headers = {} if authorization is None else {"Authorization": authorization}
    body = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}' if method in ("POST", "PUT", "PATCH") else None
    url = httpx.URL(client.base_url.join("/")).copy_with(raw_path=path.encode())  # the path exactly as written
    return client.request(method, url, headers=headers, content=body)


def test_every_route_and_method_but_health_needs_the_key(server: ServerProcess) -> None:
    leaks: list[str] = []
    tried = 0
    with httpx.Client(base_url=server.base_url, timeout=10, trust_env=False) as client:
        for path, method, authorization in itertools.product(PATHS, METHODS, BAD_AUTHORIZATION):
            response = _request(client, method, path, authorization)
            tried += 1
            if response.request.url.path == "/health" and response.status_code in (200, 405):
                continue  # /%68ealth is /health once decoded: open by design
            if response.status_code != 401:
                leaks.append(f"{method} {path} ({authorization!r:.30}) -> {response.status_code} {response.text[:100]}")
            elif response.status_code == 401 and method != "HEAD":
                error = response.json()["error"]
                assert error["type"] == "authentication_error" and API_KEY not in response.text
        health = [_request(client, method, "/health", None).status_code for method in ("GET", "HEAD")]
        good = _request(client, "GET", "/v1/models", f"Bearer {API_KEY}")
        lower_scheme = _request(client, "GET", "/v1/models", f"bearer {API_KEY}")
    record_outcome(
        Outcome(
            scenario="Requests without the right API key (17 paths x 7 methods x 11 bad headers)",
            category="security",
            tried=tried,
            unit="requests",
            lost=len(leaks),
            lost_meaning="a request without the right key that got anything but 401",
            expected="401 OpenAI-style everywhere but /health",
            test=current_test(),
        )
    )
    assert not leaks, "\n".join(leaks[:20])
    assert health == [200, 200] or health[0] == 200
    assert good.status_code == 200 and lower_scheme.status_code == 200


def test_the_key_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every check goes through hmac.compare_digest, whatever the length or prefix of the wrong key."""
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(asgi_guard.hmac, "compare_digest", spy)
    guard = asgi_guard.AutotuneGuard(lambda *a: None, asgi_guard.GuardOptions(engine="simulated", max_request_bytes=1024, api_key=API_KEY))  # type: ignore[arg-type]
    candidates = [API_KEY, API_KEY[:1], API_KEY[:-1], API_KEY + "0", "x" * len(API_KEY), "", "z" * 4096]
    results = [
        guard._key_matches({"headers": [(b"authorization", f"Bearer {candidate}".encode())]}) for candidate in candidates
    ]
    record_outcome(
        Outcome(
            scenario="API key candidates of every length and prefix go through hmac.compare_digest",
            category="security",
            tried=len(candidates),
            unit="candidates",
            lost=len(candidates) - len(compared),
            lost_meaning="a candidate judged without the constant-time comparison (early return)",
            expected="one compare_digest per candidate, against the configured key",
            test=current_test(),
        )
    )
    assert results == [True] + [False] * (len(candidates) - 1)
    assert len(compared) == len(candidates)  # no early return on a length or prefix mismatch
    assert all(b == API_KEY.encode() for _, b in compared)


def _stand_in_vllm(config_path: Path) -> Starlette:
    async def chat(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    app.add_middleware(AutotuneMiddleware)
    return app


def test_vllm_middleware_guards_the_config_route_for_every_method(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tuned = TunedConfig(
        engine_config=EngineConfig(model="/models/m", env={"HF_TOKEN": "hf_secretvalue123"}),
        serving=ServingSettings(),
    )
    path = Path(write_config_json(tuned))
    monkeypatch.setenv("AUTOTUNE_CONFIG_JSON", str(path))
    monkeypatch.setenv("AUTOTUNE_API_KEY", API_KEY)
    leaks: list[str] = []

    async def scenario() -> httpx.Response:
        transport = httpx.ASGITransport(app=_stand_in_vllm(path))
        async with httpx.AsyncClient(transport=transport, base_url="http://vllm.test") as client:
            for method, authorization in itertools.product(METHODS, BAD_AUTHORIZATION):
                headers = {} if authorization is None else {"Authorization": authorization}
                response = await client.request(method, "/autotune/config", headers=headers)
                if "engine_config" in response.text or response.status_code == 200:
                    leaks.append(f"{method} ({authorization!r:.30}) -> {response.status_code}")
            return await client.get("/autotune/config", headers={"Authorization": f"Bearer {API_KEY}"})

    try:
        shown = asyncio.run(scenario())
    finally:
        path.unlink(missing_ok=True)
    record_outcome(
        Outcome(
            scenario="vLLM middleware: /autotune/config without the right key (7 methods x 11 bad headers)",
            category="security",
            tried=len(METHODS) * len(BAD_AUTHORIZATION),
            unit="requests",
            lost=len(leaks),
            lost_meaning="the config document (or a 200) returned without the key",
            expected="401 (or 405 for methods other than GET); env secrets masked in the document",
            test=current_test(),
        )
    )
    assert not leaks, leaks
    assert shown.status_code == 200 and shown.json()["engine"] == "vllm"
    assert "hf_secretvalue123" not in shown.text and shown.json()["engine_config"]["env"]["HF_TOKEN"] == "***"
