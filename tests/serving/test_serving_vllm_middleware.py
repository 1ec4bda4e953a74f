"""serving.vllm_middleware.AutotuneMiddleware against a stand-in Starlette app (no vLLM needed)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from helpers.fake_nvml import FakeNvml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from autotune.config import EngineConfig, ServingSettings, TunedConfig
from serving.engines.vllm_launcher import write_config_json
from serving.vllm_middleware import AutotuneMiddleware

MAX_REQUEST_BYTES = 4096


def stand_in_app(seen: list[bytes]) -> Starlette:
    """What matters of vLLM's app: it reads bodies and streams responses."""

    async def chat(request: Request) -> JSONResponse:
        body = await request.body()
        seen.append(body)
        return JSONResponse({"received_bytes": len(body)})

    async def stream(request: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[str]:
            for index in range(3):
                yield f"data: {index}\n\n"

        return StreamingResponse(chunks(), media_type="text/event-stream")

    async def models(request: Request) -> JSONResponse:
        return JSONResponse({"data": [{"id": "m"}]})

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/stream", stream, methods=["POST"]),
            Route("/v1/models", models),
        ]
    )
    app.add_middleware(AutotuneMiddleware)  # exactly how vLLM adds a --middleware class
    return app


@pytest.fixture
def make_client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    paths: list[Path] = []

    def make(api_key: str | None = None, **serving: object) -> tuple[httpx.AsyncClient, list[bytes]]:
        tuned = TunedConfig(
            engine_config=EngineConfig(model="/models/m"),
            serving=ServingSettings(max_request_bytes=MAX_REQUEST_BYTES, **serving),  # type: ignore[arg-type]
        )
        path = Path(write_config_json(tuned))
        paths.append(path)
        monkeypatch.setenv("AUTOTUNE_CONFIG_JSON", str(path))
        if api_key:
            monkeypatch.setenv("AUTOTUNE_API_KEY", api_key)
        else:
            monkeypatch.delenv("AUTOTUNE_API_KEY", raising=False)
        seen: list[bytes] = []
        transport = httpx.ASGITransport(app=stand_in_app(seen))
        return httpx.AsyncClient(transport=transport, base_url="http://vllm.test"), seen

    yield make
    for path in paths:
        path.unlink(missing_ok=True)


def chat_with_image(url: str) -> dict:
    return {
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}],
    }


def test_config_route_header_and_pass_through(make_client) -> None:  # type: ignore[no-untyped-def]
    async def scenario() -> None:
        client, seen = make_client()
        async with client:
            config = await client.get("/autotune/config")
            assert config.status_code == 200
            assert config.headers["x-autotune-engine"] == "vllm"
            assert config.json()["engine"] == "vllm" and config.json()["simulated"] is False
            body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "plain text"}]}).encode()
            response = await client.post("/v1/chat/completions", content=body)
            assert response.status_code == 200 and response.headers["x-autotune-engine"] == "vllm"
            assert seen == [body]  # the app got the body unchanged
            streamed = await client.post("/v1/stream", content=b"{}")
            assert streamed.text == "data: 0\n\ndata: 1\n\ndata: 2\n\n"
            assert streamed.headers["x-autotune-engine"] == "vllm"
            assert (await client.get("/v1/models")).headers["x-autotune-engine"] == "vllm"

    asyncio.run(scenario())


def test_config_route_needs_the_key_when_set(make_client) -> None:  # type: ignore[no-untyped-def]
    async def scenario() -> None:
        client, _ = make_client(api_key="sekret")
        async with client:
            refused = await client.get("/autotune/config")
            assert refused.status_code == 401
            assert refused.json()["error"]["type"] == "authentication_error"
            allowed = await client.get("/autotune/config", headers={"Authorization": "Bearer sekret"})
            assert allowed.status_code == 200 and "sekret" not in allowed.text
            # /v1 auth stays vLLM's job: the middleware lets it through
            assert (await client.get("/v1/models")).status_code == 200

    asyncio.run(scenario())


def test_oversized_bodies_get_413(make_client) -> None:  # type: ignore[no-untyped-def]
    async def scenario() -> None:
        client, seen = make_client()
        async with client:
            big = b'{"pad": "' + b"a" * MAX_REQUEST_BYTES + b'"}'
            response = await client.post("/v1/chat/completions", content=big)
            assert response.status_code == 413
            assert response.json()["error"]["code"] == "request_too_large"
            assert response.headers["x-autotune-engine"] == "vllm"

            async def chunks() -> AsyncIterator[bytes]:
                for _ in range(5):
                    yield b"a" * 1000

            chunked = await client.post("/v1/chat/completions", content=chunks())
            assert chunked.status_code == 413
            assert seen == []

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/cat.png",
        "https://10.0.0.1/cat.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/x",
    ],
)
def test_private_image_urls_are_refused_before_vllm_sees_them(make_client, url: str) -> None:  # type: ignore[no-untyped-def]
    async def scenario() -> None:
        client, seen = make_client()
        async with client:
            response = await client.post("/v1/chat/completions", json=chat_with_image(url))
            assert response.status_code == 400
            error = response.json()["error"]
            assert error["param"] == "messages[0].content[0].image_url.url"
            assert "address" in error["message"]
            assert seen == []

    asyncio.run(scenario())


def test_host_allow_list_and_private_opt_in(make_client) -> None:  # type: ignore[no-untyped-def]
    async def scenario() -> None:
        client, seen = make_client(allowed_image_hosts=["images.example.com"])
        async with client:
            response = await client.post("/v1/chat/completions", json=chat_with_image("https://evil.example.net/x.png"))
            assert response.status_code == 400 and "allowed_image_hosts" in response.json()["error"]["message"]
        client, seen = make_client(allow_private_image_urls=True)
        async with client:
            response = await client.post("/v1/chat/completions", json=chat_with_image("http://127.0.0.1/cat.png"))
            assert response.status_code == 200 and len(seen) == 1

    asyncio.run(scenario())


def test_text_that_mentions_a_url_is_not_an_image(make_client) -> None:  # type: ignore[no-untyped-def]
    async def scenario() -> None:
        client, seen = make_client()
        async with client:
            body = {"model": "m", "messages": [{"role": "user", "content": "http://127.0.0.1/ is my router"}]}
            response = await client.post("/v1/chat/completions", json=body)
            assert response.status_code == 200 and len(seen) == 1

    asyncio.run(scenario())


def test_chat_page_and_gpu_activity_in_front_of_vllm(make_client, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """The page's files without the key (they hold no data); /autotune/gpu, NVML's figures, with the key only;
    `web_ui: false` leaves /ui to vLLM (which has no such page)."""
    import autotune.observe.gpu

    monkeypatch.setattr(autotune.observe.gpu, "_import_nvml", FakeNvml)  # two GPUs: 50% and 70% busy
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # this server's GPU: NVML's index 1
    client, _ = make_client(api_key="k3y")

    async def scenario() -> None:
        async with client:
            page = await client.get("/ui")
            assert page.status_code == 200 and b'src="/ui/chat.js"' in page.content
            assert page.headers["x-autotune-engine"] == "vllm"
            assert (await client.get("/ui/chat.css")).status_code == 200
            assert (await client.get("/autotune/gpu")).status_code == 401
            gpu = await client.get("/autotune/gpu", headers={"Authorization": "Bearer k3y"})
            assert gpu.json() == {
                "available": True, "reason": None,
                "gpus": [{"index": 1, "name": "Fake H100 #1", "utilization_pct": 70.0,
                          "memory_used_mib": 2000.0, "memory_total_mib": 80_000.0}],
            }

    asyncio.run(scenario())
    client_off, _ = make_client(web_ui=False)

    async def scenario_off() -> None:
        async with client_off:
            assert (await client_off.get("/ui")).status_code == 404  # the stand-in vLLM app's own 404
            assert (await client_off.get("/autotune/gpu")).status_code == 404

    asyncio.run(scenario_off())
