"""The seams between the HTTP layer and an engine, and between `autotune serve` and a backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from autotune.config import EngineKind, TunedConfig
from autotune.errors import AutotuneError

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True, slots=True)
class ImageInput:
    """One image after preprocessing: what the engine needs to cost it."""

    width: int
    height: int
    tokens: int
    content_hash: str

    @property
    def pixels(self) -> int:
        return self.width * self.height


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    request_id: str
    prompt_tokens: int  # text + image tokens
    max_tokens: int | None  # None: the engine's default (what is left of the context, capped)
    images: tuple[ImageInput, ...] = ()
    ignore_eos: bool = False
    seed: int | None = None
    prefix_hash: str | None = None  # shared system-prompt prefix (for prefix caching)
    prefix_tokens: int = 0
    prompt_prefixes: tuple[tuple[str, int], ...] = ()
    """(hash of the prompt up to a point, its tokens up to there) after every content part and message, shortest
    first: a later request whose prompt starts the same way (text and image content alike) can reuse that prefix's
    KV cache, as vLLM's prefix caching does (it hashes 16-token blocks, images by their content)."""

    @property
    def image_tokens(self) -> int:
        return sum(image.tokens for image in self.images)


@dataclass(frozen=True, slots=True)
class TokenEvent:
    """One generated token; the last one has `finish_reason` set."""

    text: str
    index: int
    finish_reason: FinishReason | None = None


@dataclass(frozen=True, slots=True)
class EngineStats:
    queue_depth: int  # requests accepted but not yet running (frontend + engine waiting queue)
    running_seqs: int
    kv_usage: float  # 0..1
    preemptions_total: int = 0
    gpu_busy_fraction: float | None = None  # simulated engines only
    prefix_cache_queries: int | None = None  # prompt tokens looked up in the prefix cache (vLLM's counter); None: no cache
    prefix_cache_hits: int | None = None  # of which found cached
    mm_cache_queries: int | None = None  # images looked up in the multimodal processor cache; None: no cache
    mm_cache_hits: int | None = None
    extra: dict[str, float] = field(default_factory=dict)


class RequestRejected(AutotuneError):
    """The engine refuses a request that can never run (too long for the context, ...): a 400."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class EngineUnavailable(AutotuneError):
    """The engine is not ready or is shutting down: a 503."""


@runtime_checkable
class Engine(Protocol):
    """An engine served by our own FastAPI app (`serving.app.create_app`)."""

    kind: EngineKind

    @property
    def ready(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def check(self, request: GenerationRequest) -> GenerationRequest:
        """Resolve defaults (max_tokens) and refuse what can never run (`RequestRejected`), without waiting."""
        ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[TokenEvent]:
        """An async generator of tokens; closing it early aborts the request."""
        ...

    def stats(self) -> EngineStats: ...

    def describe(self) -> dict[str, Any]: ...

    def reset_prefix_cache(self) -> bool:
        """Forget every cached prefix (vLLM's POST /reset_prefix_cache); False when it cannot now."""
        ...

    def reset_mm_cache(self) -> None:
        """Forget every cached preprocessed image (vLLM's POST /reset_mm_cache)."""
        ...

    def reset_encoder_cache(self) -> None:
        """Forget cached vision-encoder outputs (vLLM's POST /reset_encoder_cache)."""
        ...


class ServingBackend(Protocol):
    """Runs a server process for a tuned config until it is told to stop (blocks)."""

    def run(self, tuned: TunedConfig) -> None: ...
