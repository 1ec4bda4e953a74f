"""ASGI middleware that vLLM's server loads with `--middleware serving.vllm_middleware.AutotuneMiddleware`.

Imports without vLLM. It reads the config written by `serving.engines.vllm_launcher` (path in
AUTOTUNE_CONFIG_JSON) and, through the shared `AutotuneGuard`:
- answers GET /autotune/config (API key required when one is set; the key itself is masked),
- adds `x-autotune-engine: vllm` to every response (touching only `http.response.start`),
- refuses bodies over max_request_bytes with an OpenAI-style 413,
- serves the chat page at /ui and GET /autotune/gpu (`serving.webui`; off with `serving.web_ui: false`),
- for POST bodies that contain `"http://` or `"https://` (a cheap bytes scan; only then is the JSON
  parsed) applies the image-URL policy of `serving.security`, the same code as our own app,
- with `serving.warmup_requests` > 0, sends that burst to its own server once the app has started
  (`serving.warmup`) and answers GET /health with 503 until the burst is answered, so that nothing is sent to a
  server whose kernels still compile at first use.
vLLM does its own auth on /v1 routes and its own error handling.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from autotune.config import TunedConfig
from autotune.observe.stacks.dumps import start_from_environment
from serving.asgi_guard import ASGIApp, AutotuneGuard, GuardOptions, Message, Receive, Scope, Send
from serving.errors import ApiError, error_bytes
from serving.security import ImageUrlPolicy, UrlRejected, resolve_checked
from serving.vllm_startup_fixes import share_pooled_tokenizer_on_deepcopy
from serving.warmup import WarmupState, loopback_base_url, run_warmup

start_from_environment()  # AUTOTUNE_DUMP_STACKS_EVERY_S: profile vLLM's start-up from inside its API servers
share_pooled_tokenizer_on_deepcopy()  # before vLLM's multimodal warm-up: 15-50 s less per start

CONFIG_ENV = "AUTOTUNE_CONFIG_JSON"
API_KEY_ENV = "AUTOTUNE_API_KEY"
WARMUP_TIMEOUT_S = 300.0  # after it the server says ready anyway (and logs what the warm-up lacked)
_URL_MARKERS = (b'"http://', b'"https://')
_URL_KEYS = frozenset({"url", "image_url", "video_url", "audio_url", "input_image"})


def _urls(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(json path, url) for every http(s) string under a media-URL key."""
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if key in _URL_KEYS and isinstance(value, str) and value.startswith(("http://", "https://")):
                yield where, value
            else:
                yield from _urls(value, where)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _urls(value, f"{path}[{index}]")


def make_url_check(policy: ImageUrlPolicy):  # type: ignore[no-untyped-def]
    async def check(body: bytes) -> None:
        if not any(marker in body for marker in _URL_MARKERS):
            return
        try:
            document = json.loads(body)
        except ValueError:
            return  # vLLM answers malformed JSON itself
        for where, url in _urls(document):
            try:
                await resolve_checked(url, policy)
            except UrlRejected as exc:
                raise ApiError(400, str(exc), param=where, code="invalid_image") from None

    return check


class AutotuneMiddleware(AutotuneGuard):
    def __init__(self, app: ASGIApp) -> None:
        path = os.environ.get(CONFIG_ENV)
        if not path:
            raise RuntimeError(f"{CONFIG_ENV} is not set: start vLLM through `autotune serve --engine vllm`")
        raw = Path(path).read_bytes()
        document = json.loads(raw)
        tuned = TunedConfig.model_validate(
            {key: value for key, value in document.items() if key in TunedConfig.model_fields}
        )
        settings = tuned.serving
        super().__init__(
            app,
            GuardOptions(
                engine="vllm",
                max_request_bytes=settings.max_request_bytes,
                api_key=os.environ.get(API_KEY_ENV) or None,
                auth_everywhere=False,
                config_document=raw,
                body_check=make_url_check(ImageUrlPolicy.from_settings(settings)),
                catch_errors=False,
                web_ui=settings.web_ui,
            ),
        )
        self._tuned = tuned
        self._warmup = WarmupState(settings.warmup_requests) if settings.warmup_requests > 0 else None
        self._warmup_task: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        warmup = self._warmup
        if warmup is not None and scope["type"] == "lifespan":
            await self.app(scope, receive, self._warm_up_after_start_up(send, warmup))
            return
        if warmup is not None and not warmup.done and scope["type"] == "http" and scope.get("path") == "/health":
            body = error_bytes(f"warming up: {warmup.progress()}", type="service_unavailable", code=503)
            await self._respond(send, 503, body, {"x-autotune-engine": "vllm", "Retry-After": "2"})
            return
        await super().__call__(scope, receive, send)

    def _warm_up_after_start_up(self, send: Send, warmup: WarmupState) -> Send:
        async def send_then_warm_up(message: Message) -> None:
            await send(message)
            if message["type"] == "lifespan.startup.complete" and self._warmup_task is None:
                settings = self._tuned.serving
                self._warmup_task = asyncio.create_task(run_warmup(
                    warmup, loopback_base_url(settings.host, settings.port), self._tuned.engine_config.name_for_clients,
                    os.environ.get(API_KEY_ENV) or None, WARMUP_TIMEOUT_S,
                ))

        return send_then_warm_up
