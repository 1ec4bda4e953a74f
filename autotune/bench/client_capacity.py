"""What one client process costs on this machine: CPU seconds per request, per MB of body and per streamed token.

The benchmark sizes its client from this (schedule.choose_client_processes): an open-loop window at rate R
whose requests carry B bytes and stream T tokens keeps a process R * (request_s + B/1e6 * body_s_per_mb +
T * token_s) cores busy, and each process is planned at no more than `schedule.PROCESS_CORE_SHARE` of a core.

The figures are measured once per machine by a loopback calibration (`measure_client_cost`, ~2 s): the real
open-loop worker (`worker.Worker`: a task and a connection per request, the self-watch) sends three windows to
a fast fake streaming server that runs in another thread: small requests of one token, requests with 256 KB
bodies, and requests streaming 64 tokens one chunk each. The client thread's own CPU time (`time.thread_time`) per batch gives the three
coefficients. They are cached in `~/.cache/autotune/client-cost.json` (or `$AUTOTUNE_CACHE_DIR`) under a key
naming the CPU, core count, Python and aiohttp versions. If the calibration cannot run, `FALLBACK_COST` is used.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import threading
import time
from pathlib import Path
from typing import Literal

import aiohttp
from pydantic import BaseModel, ConfigDict, ValidationError

from autotune.bench.client import PreparedRequest
from autotune.bench.worker import Worker, WorkerPlan
from autotune.cache import cache_root

log = logging.getLogger(__name__)

CALIBRATION_VERSION = 1
_STREAMS = 16
_RATE_RPS = 200.0
_SMALL_REQUESTS = 120
_BODY_REQUESTS = 60
_BODY_BYTES = 256 * 1024
_TOKEN_REQUESTS = 60
_TOKENS = 64
_TOKEN_GAP_S = 0.002
"""The fake server's gap between tokens: long enough that the client reads each chunk on its own, as it does
from a real server (chunks that arrive together cost one read, which would understate the per-token cost)."""
_DEADLINE_S = 30.0


class ClientCost(BaseModel):
    """CPU seconds one client process spends per request: fixed + per MB of request body + per streamed token."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request_s: float
    body_s_per_mb: float
    token_s: float
    source: Literal["measured", "fallback"]

    def cpu_s_per_request(self, body_bytes: float, tokens: float) -> float:
        return self.request_s + body_bytes / 1e6 * self.body_s_per_mb + tokens * self.token_s


FALLBACK_COST = ClientCost(request_s=0.002, body_s_per_mb=0.02, token_s=60e-6, source="fallback")
"""Used when the calibration cannot run: about twice what a busy 2-core Xeon VM measured (request 0.9 ms,
8 ms per MB, 25 us per token), so a slower machine is still planned with headroom; the self-watch and the
re-run with more processes catch the rest."""


def machine_key() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"v{CALIBRATION_VERSION}|{cpu}|{os.cpu_count()}|py{platform.python_version()}|aiohttp{aiohttp.__version__}"


def _cache_path() -> Path:
    return cache_root() / "client-cost.json"


def _load_cached(key: str) -> ClientCost | None:
    try:
        data = json.loads(_cache_path().read_text())
        return ClientCost.model_validate(data[key])
    except (OSError, ValueError, KeyError, TypeError, ValidationError):
        return None


def _save(key: str, cost: ClientCost) -> None:
    path = _cache_path()
    try:
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                data = {}
        except (OSError, ValueError):
            data = {}
        data[key] = cost.model_dump()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(path)
    except OSError as exc:
        log.warning("client cost: cannot write %s (%s); it will be measured again next time", path, exc)


def client_cost() -> ClientCost:
    """This machine's client cost: cached, else measured now (and cached), else the fallback."""
    key = machine_key()
    cached = _load_cached(key)
    if cached is not None:
        return cached
    try:
        cost = measure_client_cost()
    except Exception as exc:  # a calibration that cannot run must not stop the benchmark
        log.warning("client cost: the loopback calibration failed (%s: %s); using the fallback", type(exc).__name__, exc)
        return FALLBACK_COST
    log.info("client cost measured: %s", cost)
    _save(key, cost)
    return cost


# -- the loopback calibration ---------------------------------------------------------------------


class _FakeStreamServer(asyncio.Protocol):
    """HTTP/1.1 keep-alive; POST /tokens/N answers a chunked SSE stream: role, N tokens, usage, [DONE]."""

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._next()

    def _next(self) -> None:
        if self.busy:
            return
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = self.buffer[:head_end].decode("latin-1").split("\r\n")
        length = next((int(line.split(":", 1)[1]) for line in head[1:] if line.lower().startswith("content-length:")), 0)
        if len(self.buffer) < head_end + 4 + length:
            return
        self.buffer = self.buffer[head_end + 4 + length :]
        tokens = int(head[0].split()[1].rsplit("/", 1)[-1])
        self.busy = True
        asyncio.get_running_loop().create_task(self._respond(tokens))

    def _chunk(self, payload: bytes) -> None:
        assert self.transport is not None
        event = b"data: " + payload + b"\n\n"
        self.transport.write(b"%x\r\n%s\r\n" % (len(event), event))

    async def _respond(self, tokens: int) -> None:
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        self._chunk(b'{"choices":[{"index":0,"delta":{"role":"assistant"}}]}')
        for _ in range(tokens):
            await asyncio.sleep(_TOKEN_GAP_S if tokens > 1 else 0)
            self._chunk(b'{"choices":[{"index":0,"delta":{"content":" word"}}]}')
        self._chunk(b'{"choices":[],"usage":{"prompt_tokens":8,"completion_tokens":%d}}' % tokens)
        self._chunk(b"[DONE]")
        self.transport.write(b"0\r\n\r\n")
        self.busy = False
        self._next()


class _ServerThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="client-cost-server", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(self.loop.create_server(_FakeStreamServer, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self.loop.run_forever()
        server.close()
        self.loop.run_until_complete(server.wait_closed())
        self.loop.close()

    def __enter__(self) -> _ServerThread:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the calibration server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)


async def _batch(url: str, count: int, rate_rps: float, body: bytes) -> float:
    """Client-thread CPU seconds per request of an open-loop window: `count` requests at `rate_rps`."""
    plan = WorkerPlan(
        worker_id=0,
        chat_url=url,
        headers={"Content-Type": "application/json"},
        requests=[PreparedRequest(index=i, body=body, max_tokens=1) for i in range(count)],
        offsets_s=[i / rate_rps for i in range(count)],
    )
    async with Worker(plan) as worker:
        start = time.thread_time()
        report = await worker.run_window(time.time())
        spent = time.thread_time() - start
    failed = [outcome.error for outcome in report.outcomes if not outcome.success]
    if failed:
        raise RuntimeError(f"{len(failed)} calibration requests failed: {failed[0]}")
    return spent / count


async def _calibrate(port: int) -> ClientCost:
    """The real open-loop worker (new connections, one task per request, the self-watch) against the fake server."""
    base = f"http://127.0.0.1:{port}/tokens"
    small = b'{"messages":[{"role":"user","content":"hi"}]}'
    large = b'{"messages":[{"role":"user","content":"' + b"A" * _BODY_BYTES + b'"}]}'
    await _batch(f"{base}/1", _STREAMS, _RATE_RPS, small)  # import and warm the code paths
    request_s = await _batch(f"{base}/1", _SMALL_REQUESTS, _RATE_RPS, small)
    body_s = await _batch(f"{base}/1", _BODY_REQUESTS, _RATE_RPS / 2, large)
    token_s = await _batch(f"{base}/{_TOKENS}", _TOKEN_REQUESTS, _RATE_RPS / 2, small)
    return ClientCost(
        request_s=request_s,
        body_s_per_mb=max(0.0, body_s - request_s) / (len(large) / 1e6),
        token_s=max(0.0, token_s - request_s) / (_TOKENS - 1),
        source="measured",
    )


def measure_client_cost() -> ClientCost:
    """Run the loopback calibration now (in threads of their own: callable from inside an event loop)."""
    result: list[ClientCost] = []
    errors: list[BaseException] = []

    def client() -> None:
        try:
            with _ServerThread() as server:
                result.append(asyncio.run(asyncio.wait_for(_calibrate(server.port), _DEADLINE_S)))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=client, name="client-cost-client", daemon=True)
    thread.start()
    thread.join(_DEADLINE_S + 15)
    if errors:
        raise errors[0]
    if not result:
        raise RuntimeError("the calibration did not finish")
    return result[0]
