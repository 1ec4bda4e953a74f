"""A tiny OpenAI-compatible streaming server for benchmark tests (and the capacity experiment).

python fake_openai_server.py [--ttft-ms 50] [--itl-ms 10] [--tokens 16] [--fail-every N --fail-status 500]
    [--drop-every N --drop-after-tokens K] [--max-concurrent N] [--exit-after N] [--role-with-first-token] [--simulated]
    [--port 0]
Prints `fake server listening on http://127.0.0.1:PORT` once it accepts connections.

Each streamed response: a role-only chunk at once (must not count as the first token), then one
chunk per token (the first after --ttft-ms, the others --itl-ms apart), a usage chunk, [DONE].
`max_tokens` of the request sets the token count. --max-concurrent N serves at most N streams at once
(the others queue before their first token: a server with a hard capacity of N / request time).
--exit-after N: the process exits at once when request N+1 arrives (a server whose engine died).
GET /stats reports what the server saw.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from aiohttp import web

START_DEADLINE_S = 20.0


def _chunk(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


class FakeServer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.received = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.generated = 0
        self.body_bytes = 0
        self.models: list[str] = []
        self.image_digests: list[str] = []
        self.slots = asyncio.Semaphore(args.max_concurrent) if args.max_concurrent else None

    def _error(self, status: int, message: str) -> web.Response:
        body = {"error": {"message": message, "type": "injected_error", "param": None, "code": status}}
        return web.json_response(body, status=status)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        if self.slots is None:
            return await self._chat(request)
        async with self.slots:
            return await self._chat(request)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.received += 1
        number = self.received
        if self.args.exit_after and number > self.args.exit_after:
            os._exit(3)
        raw = await request.read()
        self.body_bytes += len(raw)
        body = json.loads(raw)
        self.models.append(body.get("model"))
        for message in body.get("messages") or []:
            for part in message.get("content") if isinstance(message.get("content"), list) else []:
                if isinstance(part, dict) and part.get("type") == "image_url":
                    url = str((part.get("image_url") or {}).get("url", ""))
                    self.image_digests.append(hashlib.sha256(url.encode()).hexdigest()[:16])
        args = self.args
        if args.fail_every and number % args.fail_every == 0:
            return self._error(args.fail_status, f"injected failure {args.fail_status}")
        tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or args.tokens)
        drop = bool(args.drop_every and number % args.drop_every == 0)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
            if args.simulated:
                response.headers["x-autotune-engine"] = "simulated"
            await response.prepare(request)
            base = {"id": f"chatcmpl-{number}", "object": "chat.completion.chunk", "model": body.get("model")}
            role_chunk = _chunk({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
            if not args.role_with_first_token:
                await response.write(role_chunk)
            for position in range(tokens):
                delay_ms = args.ttft_ms if position == 0 else args.itl_ms
                if delay_ms:
                    await asyncio.sleep(delay_ms / 1000.0)
                if position == 0 and args.role_with_first_token:  # as vLLM: the role chunk comes with the first output
                    await response.write(role_chunk)
                if drop and position == args.drop_after_tokens:
                    request.transport.abort()  # a dropped connection mid-stream
                    return response
                await response.write(_chunk({**base, "choices": [{"index": 0, "delta": {"content": f" t{position}"}}]}))
                self.generated += 1
            usage = {"prompt_tokens": 42, "completion_tokens": tokens, "total_tokens": 42 + tokens}
            await response.write(_chunk({**base, "choices": [], "usage": usage}))
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
            return response
        finally:
            self.in_flight -= 1

    async def models_route(self, request: web.Request) -> web.Response:
        response = web.json_response({"object": "list", "data": [{"id": self.args.model, "object": "model"}]})
        if self.args.simulated:
            response.headers["x-autotune-engine"] = "simulated"
        return response

    async def config(self, request: web.Request) -> web.Response:
        if not self.args.simulated:
            return self._error(404, "not found")
        return web.json_response({"engine": "simulated", "simulated": True, "model": self.args.model})

    async def metrics(self, request: web.Request) -> web.Response:
        text = (
            "# TYPE vllm:num_requests_running gauge\n"
            f'vllm:num_requests_running{{model_name="{self.args.model}"}} {self.in_flight}\n'
            "# TYPE vllm:num_requests_waiting gauge\n"
            f'vllm:num_requests_waiting{{model_name="{self.args.model}"}} 0\n'
            "# TYPE vllm:generation_tokens counter\n"
            f'vllm:generation_tokens_total{{model_name="{self.args.model}"}} {self.generated}\n'
        )
        return web.Response(text=text, content_type="text/plain")

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"received": self.received, "max_in_flight": self.max_in_flight, "generated": self.generated,
             "body_bytes": self.body_bytes, "models": sorted(set(self.models)),
             "images": len(self.image_digests), "distinct_images": len(set(self.image_digests))}
        )

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")


def build_app(args: argparse.Namespace) -> web.Application:
    server = FakeServer(args)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", server.chat)
    app.router.add_get("/v1/models", server.models_route)
    app.router.add_get("/autotune/config", server.config)
    app.router.add_get("/health", server.health)
    app.router.add_get("/stats", server.stats)
    if not args.no_metrics:
        app.router.add_get("/metrics", server.metrics)
    return app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--model", default="fake-model")
    parser.add_argument("--ttft-ms", type=float, default=0.0)
    parser.add_argument("--itl-ms", type=float, default=0.0)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--fail-every", type=int, default=0)
    parser.add_argument("--fail-status", type=int, default=500)
    parser.add_argument("--drop-every", type=int, default=0)
    parser.add_argument("--drop-after-tokens", type=int, default=2)
    parser.add_argument("--max-concurrent", type=int, default=0)
    parser.add_argument("--exit-after", type=int, default=0)
    parser.add_argument("--role-with-first-token", action="store_true")
    parser.add_argument("--simulated", action="store_true")
    parser.add_argument("--no-metrics", action="store_true")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    runner = web.AppRunner(build_app(args), access_log=None)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    site = web.SockSite(runner, sock, backlog=1024)
    await site.start()
    print(f"fake server listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    await asyncio.Event().wait()


@contextlib.contextmanager
def launch(*args: str) -> Iterator[str]:
    """Run this server in its own process with CLI `args`; yield its URL once /health answers; stop it."""
    with launch_process(*args) as (url, _pid):
        yield url


@contextlib.contextmanager
def launch_process(*args: str) -> Iterator[tuple[str, int]]:
    """As `launch`, yielding (url, pid)."""
    import httpx

    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "listening on" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        if not ready.wait(START_DEADLINE_S):
            raise RuntimeError(f"fake server did not start: {''.join(lines)}")
        url = next(line for line in lines if "listening on" in line).rsplit(" ", 1)[-1].strip()
        deadline = time.monotonic() + START_DEADLINE_S
        while httpx.get(f"{url}/health", timeout=2).status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("fake server never became healthy")
        yield url, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


if __name__ == "__main__":
    try:
        asyncio.run(serve(parse_args()))
    except KeyboardInterrupt:
        pass
