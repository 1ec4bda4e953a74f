"""Requests a vLLM API server sends itself before its /health says ready (`serving.warmup_requests`).

vLLM 0.24 warms up its CUDA graphs and the sampler at one batch size, but some Triton kernels compile at first use
with a new specialization: the top-k/top-p sampler (`_topk_topp_kernel`, used from 8 sampled rows on, specialized on
whether the batch size is a multiple of 16) compiled on an H100 a few seconds into a soak of the reference best
config, stalled both engine cores and queued ~8 s of requests (experiments/reliability/gpu-2026-12-05-h100).

So each API server sends `requests` chat completions at once, with prompts of several lengths, small images of two
sizes (dropped if the model refuses images) and output lengths spread from 8 to 64 tokens (`ignore_eos`): as they
finish one by one, each engine core's decode batch passes through every size from its share of the burst down to
one, before any client is let in. The sampling parameters stay the model's defaults, as a client's would.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from autotune.bench.images import data_url, encoded_image, mime_for

log = logging.getLogger("autotune.serve")

MIN_OUTPUT_TOKENS = 8
MAX_OUTPUT_TOKENS = 64
IMAGE_SIZES = ((224, 224), (640, 360))
_CONNECT_RETRY_S = 0.2
_WORDS = "the quick brown fox jumps over a lazy dog while seven wizards quietly judge boxing matches".split()


@dataclass
class WarmupState:
    """Shared between the warm-up task and the /health gate of one API server."""

    requests: int
    answered: int = 0
    failed: int = 0
    done: bool = False
    errors: list[str] = field(default_factory=list)

    def progress(self) -> str:
        return f"{self.answered + self.failed} of {self.requests} warm-up requests answered"


def loopback_base_url(host: str, port: int) -> str:
    """The URL this server reaches itself at: a wildcard bind address becomes its loopback address."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def output_tokens(index: int, count: int) -> int:
    """Output lengths spread evenly over MIN..MAX_OUTPUT_TOKENS, so the burst's requests finish one after another."""
    if count <= 1:
        return MIN_OUTPUT_TOKENS
    return MIN_OUTPUT_TOKENS + round(index * (MAX_OUTPUT_TOKENS - MIN_OUTPUT_TOKENS) / (count - 1))


def warmup_bodies(model: str, count: int, images: bool) -> Iterator[dict[str, Any]]:
    """The burst: prompt lengths cycle through 1-6 sentences; every other request carries an image when `images`."""
    for index in range(count):
        words = [_WORDS[(index + k) % len(_WORDS)] for k in range(16 * (1 + index % 6))]
        text = f"warm-up {index}: " + " ".join(words)
        content: str | list[dict[str, Any]] = text
        if images and index % 2 == 0:
            width, height = IMAGE_SIZES[(index // 2) % len(IMAGE_SIZES)]
            image = encoded_image(width, height, index, "png")  # distinct per request, as the load generator draws them
            content = [
                {"type": "image_url", "image_url": {"url": data_url(image, mime_for("png"))}},
                {"type": "text", "text": text},
            ]
        yield {
            "model": model,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": output_tokens(index, count),
            "ignore_eos": True,
            "stream": False,
        }


async def _await_listening(client: httpx.AsyncClient, url: str, deadline: float) -> None:
    """Until the server accepts connections (uvicorn starts serving right after the app's start-up)."""
    while True:
        try:
            await client.get(url)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(_CONNECT_RETRY_S)


def _refuses_images(answer: httpx.Response | BaseException) -> bool:
    return isinstance(answer, httpx.Response) and 400 <= answer.status_code < 500 and "image" in answer.text.lower()


async def run_warmup(
    state: WarmupState, base_url: str, model: str, api_key: str | None, timeout_s: float
) -> None:
    """Send the burst and count the answers into `state`; a failure is logged, never raised (the server still serves).
    Requests refused for their image (a model without vision) are sent again as text, again all at once."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    chat = f"{base_url}/v1/chat/completions"
    started = time.monotonic()
    try:
        async with httpx.AsyncClient(headers=headers, timeout=timeout_s, limits=httpx.Limits(max_connections=None)) as client:
            await _await_listening(client, f"{base_url}/health", started + timeout_s)

            async def burst(bodies: list[dict[str, Any]]) -> list[httpx.Response | BaseException]:
                return await asyncio.wait_for(
                    asyncio.gather(*(client.post(chat, json=body) for body in bodies), return_exceptions=True),
                    timeout=max(1.0, started + timeout_s - time.monotonic()),
                )

            with_images = list(warmup_bodies(model, state.requests, images=True))
            answers = await burst(with_images)
            refused = {index for index, answer in enumerate(answers) if _refuses_images(answer)}
            if refused:
                log.info("warm-up: the model refuses images; %d requests sent again as text", len(refused))
                text_only = list(warmup_bodies(model, state.requests, images=False))
                again = await burst([text_only[index] for index in sorted(refused)])
                answers = [answer for index, answer in enumerate(answers) if index not in refused] + again
            for answer in answers:
                _count(state, answer)
    except (httpx.HTTPError, OSError, TimeoutError) as exc:
        state.errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        state.done = True
    elapsed = time.monotonic() - started
    if state.failed or state.errors:
        log.warning("warm-up: %s in %.1f s, %d failed: %s", state.progress(), elapsed, state.failed, "; ".join(state.errors[:3]))
    else:
        log.info("warm-up: %s in %.1f s", state.progress(), elapsed)


def _count(state: WarmupState, answer: httpx.Response | BaseException) -> None:
    if isinstance(answer, httpx.Response) and answer.status_code == 200:
        state.answered += 1
        return
    state.failed += 1
    if len(state.errors) < 3:
        state.errors.append(
            f"HTTP {answer.status_code}: {answer.text[:200]}" if isinstance(answer, httpx.Response)
            else f"{type(answer).__name__}: {answer}"
        )
