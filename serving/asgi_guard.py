"""A pure ASGI middleware shared by our app and vLLM's (via `serving.vllm_middleware`).

Cheap by design: it touches `http.response.start` only (to add `x-autotune-engine`) and passes
response bodies through untouched, so streaming is not slowed. Request bodies of POST/PUT/PATCH
are read once here (bounded by `max_request_bytes`: Content-Length first, then a running count) and
replayed to the app. Optionally it checks the API key (every method; constant-time comparison),
answers GET /autotune/config, checks image URLs in JSON bodies, and turns an escaped exception
into an OpenAI-style 500. With `web_ui` it serves the chat page's static files under /ui (no key: they hold
no data; see `serving.webui`) and GET /autotune/gpu (key required, like the API).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from serving.errors import ApiError, error_bytes
from serving.webui import GPU_PATH, SECURITY_HEADERS, asset, gpu_activity_document, is_ui_path

log = logging.getLogger("autotune.serve")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
BodyCheck = Callable[[bytes], Awaitable[None]]  # raises ApiError to refuse a body

ENGINE_HEADER = b"x-autotune-engine"
CONFIG_PATH = "/autotune/config"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_OPEN_PATHS = frozenset({"/health"})


class _BodyTooLarge(Exception):
    pass


class _ClientGone(Exception):
    pass


@dataclass
class GuardOptions:
    engine: str  # "simulated" | "vllm"
    max_request_bytes: int
    api_key: str | None = None
    auth_everywhere: bool = True  # False: only our own routes (/autotune/config); the app guards the rest
    config_document: bytes | None = None  # served at GET /autotune/config when set
    body_check: BodyCheck | None = None
    catch_errors: bool = True
    extra_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    web_ui: bool = False  # the chat page at /ui and GET /autotune/gpu


class AutotuneGuard:
    def __init__(self, app: ASGIApp, options: GuardOptions) -> None:
        self.app = app
        self.options = options
        self._headers = [(ENGINE_HEADER, options.engine.encode()), *options.extra_headers]
        self._key = options.api_key.encode() if options.api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        extra = self._headers

        async def send_with_header(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = dict(message)
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        path: str = scope.get("path", "")
        method: str = scope.get("method", "GET")
        try:
            if self.options.web_ui and is_ui_path(path):
                await self._serve_ui(send_with_header, path, method)
                return
            # Every method, OPTIONS included: no route of ours needs a CORS preflight, and an exempt
            # OPTIONS once served the config document without the key.
            if self._key is not None and self._needs_key(path):
                if not self._key_matches(scope):
                    raise ApiError(
                        401, "Invalid or missing API key", type="authentication_error", code="invalid_api_key"
                    )
            if path == CONFIG_PATH and self.options.config_document is not None:
                if method != "GET":
                    raise ApiError(
                        405, f"Method {method} not allowed on {CONFIG_PATH} (GET only)", code="method_not_allowed",
                        headers={"Allow": "GET"},
                    )
                await self._respond(send_with_header, 200, self.options.config_document)
                return
            if path == GPU_PATH and self.options.web_ui:
                _require_get(method, GPU_PATH)
                document = await asyncio.to_thread(gpu_activity_document, self.options.engine != "simulated")
                await self._respond(send_with_header, 200, document)
                return
            if method in _BODY_METHODS:
                body = await self._read_body(scope, receive)
                if self.options.body_check is not None:
                    await self.options.body_check(body)
                receive = _replay(body, receive)
            await self.app(scope, receive, send_with_header)
        except ApiError as exc:
            if started:
                raise
            await self._respond(send_with_header, exc.status, json.dumps(exc.body()).encode(), exc.headers)
        except _BodyTooLarge:
            await self._respond(
                send_with_header,
                413,
                error_bytes(
                    f"Request body is larger than max_request_bytes ({self.options.max_request_bytes} bytes)",
                    type="invalid_request_error",
                    code="request_too_large",
                ),
            )
        except _ClientGone:
            return
        except Exception:
            if not self.options.catch_errors or started:
                raise
            log.exception("internal error while serving %s %s", method, path)
            await self._respond(
                send_with_header, 500, error_bytes("Internal server error", type="server_error", code=500)
            )

    def _needs_key(self, path: str) -> bool:
        if path in _OPEN_PATHS:
            return False
        return self.options.auth_everywhere or path in (CONFIG_PATH, GPU_PATH)

    async def _serve_ui(self, send: Send, path: str, method: str) -> None:
        """The page's static files; 404 for any other path under /ui, 405 for methods other than GET and HEAD."""
        if method not in ("GET", "HEAD"):
            raise ApiError(
                405, f"Method {method} not allowed on {path} (GET only)", code="method_not_allowed",
                headers={"Allow": "GET, HEAD"},
            )
        found = asset(path)
        if found is None:
            raise ApiError(404, f"No page at {path}", type="not_found_error", code=404)
        headers = [(b"content-type", found.content_type.encode()), (b"content-length", str(len(found.body)).encode())]
        headers += [(name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items()]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else found.body})

    def _key_matches(self, scope: Scope) -> bool:
        assert self._key is not None
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self._key)
        return False

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.options.max_request_bytes
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                if not value.isdigit():
                    raise ApiError(400, "invalid Content-Length header")
                if int(value) > limit:
                    raise _BodyTooLarge
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > limit:
                raise _BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    @staticmethod
    async def _respond(send: Send, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": body})


def _require_get(method: str, path: str) -> None:
    if method != "GET":
        raise ApiError(
            405, f"Method {method} not allowed on {path} (GET only)", code="method_not_allowed", headers={"Allow": "GET"}
        )


def _replay(body: bytes, receive: Receive) -> Receive:
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # e.g. http.disconnect while streaming

    return replay
