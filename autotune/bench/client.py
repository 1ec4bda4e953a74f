"""OpenAI streaming chat client. `stream_chat` never raises: every failure becomes an Outcome.

Timing (time.perf_counter, per received network read):
- TTFT: first SSE chunk that carries generated text (a role-only first chunk does not count);
- ITL: the gap between consecutive such chunks (one token per chunk on our server and vLLM);
- E2EL: until `data: [DONE]` (or the end of the stream);
- tokens: from the final usage chunk (`stream_options.include_usage`), else the chunk count.
Chunks are classified with a byte pattern; only usage and error chunks are JSON-parsed.
This module is kept light (no numpy/pandas): spawned client processes import it.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

_TOKEN_CHUNK = re.compile(rb'"(?:content|reasoning_content|reasoning)"\s*:\s*"[^"]|"tool_calls"\s*:\s*\[\s*\{')
_MAX_ERROR_CHARS = 300


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """A request rendered before the measured window: the JSON body is already bytes."""

    index: int
    body: bytes
    max_tokens: int
    text_tokens: int | None = None
    images: int = 0


@dataclass(slots=True)
class Outcome:
    """What one request did. `e2el_ms` of a failure is the time until the failure was seen."""

    index: int
    send_time_s: float = 0.0
    success: bool = False
    ttft_ms: float | None = None
    e2el_ms: float | None = None
    itl_ms: list[float] = field(default_factory=list)
    input_tokens: int | None = None
    output_tokens: int | None = None
    error: str | None = None
    warmup: bool = False
    phase: int = 0
    unfinished: bool = False
    """Cancelled while still streaming because its window stopped waiting (see WorkerPlan.wait_for_s)."""


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 3] + "..."


def _error_message(body: str) -> str:
    """The message of an OpenAI-style error body, else the body itself."""
    try:
        data = json.loads(body)
    except ValueError:
        return _clip(body)
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict) and error.get("message"):
            return _clip(str(error["message"]))
        if isinstance(error, str):
            return _clip(error)
    return _clip(body)


def _burn(seconds: float) -> None:
    """Busy-wait (test hook that starves the client process deliberately)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class _StreamState:
    __slots__ = ("start", "first", "last", "itl_ms", "chunks", "usage", "error", "done")

    def __init__(self, start: float) -> None:
        self.start = start
        self.first: float | None = None
        self.last = start
        self.itl_ms: list[float] = []
        self.chunks = 0
        self.usage: dict[str, Any] | None = None
        self.error: str | None = None
        self.done = False

    def on_data(self, payload: bytes, now: float) -> None:
        if payload == b"[DONE]":
            self.done = True
            return
        if _TOKEN_CHUNK.search(payload):
            if self.first is None:
                self.first = now
            else:
                self.itl_ms.append(round((now - self.last) * 1000.0, 3))
            self.last = now
            self.chunks += 1
        if b'"completion_tokens"' in payload or b'"error"' in payload:
            self._parse_special(payload)

    def _parse_special(self, payload: bytes) -> None:
        try:
            data = json.loads(payload)
        except ValueError:
            return
        if not isinstance(data, dict):
            return
        if isinstance(data.get("usage"), dict):
            self.usage = data["usage"]
        if data.get("error") or data.get("object") == "error":
            self.error = "stream error: " + _error_message(payload.decode("utf-8", "replace"))


async def stream_chat(
    session: aiohttp.ClientSession,
    url: str,
    request: PreparedRequest,
    *,
    headers: dict[str, str],
    t0: float,
    warmup: bool = False,
    phase: int = 0,
    burn_s_per_chunk: float = 0.0,
) -> Outcome:
    """POST one streaming chat request and time it. Never raises (except on cancellation)."""
    outcome = Outcome(index=request.index, warmup=warmup, phase=phase)
    start = time.perf_counter()
    outcome.send_time_s = start - t0
    state = _StreamState(start)
    try:
        async with session.post(url, data=request.body, headers=headers) as response:
            if response.status != 200:
                body = await response.text(errors="replace")
                outcome.error = f"HTTP {response.status}: {_error_message(body) or response.reason or ''}"
            else:
                buffer = b""
                async for data in response.content.iter_any():
                    now = time.perf_counter()
                    buffer += data
                    if b"\n" not in data:
                        continue
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        if line.startswith(b"data:"):
                            state.on_data(line[5:].strip(), now)
                            if burn_s_per_chunk:
                                _burn(burn_s_per_chunk)
                if buffer.startswith(b"data:"):
                    state.on_data(buffer[5:].strip(), time.perf_counter())
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # failures are data
        outcome.error = _clip(f"{type(exc).__name__}: {exc}") if str(exc) else type(exc).__name__
    end = time.perf_counter()
    outcome.e2el_ms = round((end - start) * 1000.0, 3)
    if outcome.error is None:
        if state.error is not None:
            outcome.error = state.error
        elif not state.done:
            outcome.error = "stream ended before 'data: [DONE]' (connection dropped?)"
        elif state.first is None:
            outcome.error = "no tokens in the response"
    if state.first is not None:
        outcome.ttft_ms = round((state.first - start) * 1000.0, 3)
    outcome.itl_ms = state.itl_ms
    usage = state.usage or {}
    prompt_tokens = usage.get("prompt_tokens")
    completion_tokens = usage.get("completion_tokens")
    outcome.input_tokens = prompt_tokens if isinstance(prompt_tokens, int) else None
    outcome.output_tokens = completion_tokens if isinstance(completion_tokens, int) else (state.chunks or None)
    outcome.success = outcome.error is None
    return outcome
