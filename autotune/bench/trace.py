"""Trace replay: a timestamped JSONL trace of requests, sent at its own pace or time-scaled.

A trace line describes one request's shape, not its content (docs/traces.md):

    {"timestamp_s": 0.25, "input_tokens": 512, "output_tokens": 128, "images": ["448x448", {"width": 1024, "height": 768}]}

- `timestamp_s`: when the request starts, in seconds; any origin (the first line's time is the start of the
  replay); lines are in time order (equal times are allowed).
- `input_tokens`: prompt text tokens (the chat template's and the images' tokens come on top), >= 1.
- `output_tokens`: tokens to generate (`max_tokens`; exact when the workload has `ignore_eos: true`), >= 1.
- `images`: image sizes, `WIDTHxHEIGHT` or `{width, height}`; absent or `[]` for a text-only request.

Content is generated as in synthetic workloads (deterministic words, generated images), seeded by the request
index: replays with different seeds send different images of the same sizes. Load mode `replay` sends line i of
the trace at `(timestamp_s[i] - timestamp_s[0]) x time_scale` seconds into the window (`time_scale: 0.5` replays
twice as fast); other load modes take the trace's request shapes in order and send them at their own pace.
A bad trace raises ConfigError naming the file, the line and the field.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from autotune.bench.client import PreparedRequest
from autotune.bench.images import data_url, encoded_image, mime_for
from autotune.bench.request_body import request_body, request_rng
from autotune.bench.schemas import LoadSpec
from autotune.bench.text import TokenCounter, fit_to_tokens, load_token_counter, make_text
from autotune.bench.workload import ImageSize, TraceSpec, Workload, _size_from_text
from autotune.errors import ConfigError, format_validation_error

_IMAGE_STREAM = 13  # seed stream of trace images, apart from the text stream


class TraceLine(BaseModel):
    """One line of a trace file, as written."""

    model_config = ConfigDict(extra="forbid")

    timestamp_s: Annotated[float, Field(allow_inf_nan=False)]
    input_tokens: Annotated[int, Field(ge=1)]
    output_tokens: Annotated[int, Field(ge=1)]
    images: list[Annotated[ImageSize, BeforeValidator(_size_from_text)]] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TraceEntry:
    """One validated request of a trace: its send offset from the first request and its shape."""

    line: int
    offset_s: float
    input_tokens: int
    output_tokens: int
    images: tuple[tuple[int, int], ...]


def load_trace(path: str | Path) -> list[TraceEntry]:
    """Read and check a trace file; entries in file order, offsets from the first line's timestamp."""
    source = Path(path)
    if not source.is_file():
        raise ConfigError(f"trace.path: no such file: {source}")
    stat = source.stat()
    return list(_load_trace(str(source.resolve()), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=8)
def _load_trace(path: str, mtime_ns: int, size: int) -> tuple[TraceEntry, ...]:
    """Cached by (path, modification time, size): the renderer and the schedule read the same file once."""
    source = Path(path)
    entries: list[TraceEntry] = []
    first: float | None = None
    previous: tuple[int, float] | None = None
    with source.open(encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            line = _parse_line(raw, number, source)
            if previous is not None and line.timestamp_s < previous[1]:
                raise ConfigError(
                    f"{source}:{number}: timestamp_s {line.timestamp_s} is earlier than line {previous[0]}'s "
                    f"{previous[1]}: a trace must be in time order (sort it by timestamp_s)"
                )
            previous = (number, line.timestamp_s)
            first = line.timestamp_s if first is None else first
            entries.append(
                TraceEntry(
                    line=number,
                    offset_s=line.timestamp_s - first,
                    input_tokens=line.input_tokens,
                    output_tokens=line.output_tokens,
                    images=tuple((size.width, size.height) for size in line.images),
                )
            )
    if not entries:
        raise ConfigError(f"{source}: the trace has no requests")
    return tuple(entries)


def _parse_line(raw: str, number: int, source: Path) -> TraceLine:
    where = f"{source}:{number}"
    try:
        data: Any = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: not valid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object with timestamp_s, input_tokens, output_tokens, got {type(data).__name__}")
    try:
        return TraceLine.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, where)) from None


class TraceRenderer:
    """`render(index, model_name)`: request `index` has the shape of trace line `index mod len(trace)`."""

    def __init__(self, workload: Workload, spec: TraceSpec) -> None:
        self.workload = workload
        self.spec = spec
        self.entries = load_trace(spec.path)
        self.count: TokenCounter | None = load_token_counter(spec.tokenizer) if spec.tokenizer else None

    @property
    def lines(self) -> int | None:
        """None: every index renders its own text and images (the trace gives shapes, not content)."""
        return None

    def _text(self, num_tokens: int, rng: np.random.Generator) -> str:
        text = make_text(num_tokens, rng)
        return fit_to_tokens(text, num_tokens, self.count, rng) if self.count else text

    def render(self, index: int, model_name: str) -> PreparedRequest:
        entry = self.entries[index % len(self.entries)]
        rng = request_rng(self.workload.seed, index)
        content: list[dict[str, Any]] = []
        for slot, (width, height) in enumerate(entry.images):
            seed = int(request_rng(self.workload.seed, index * 64 + slot, _IMAGE_STREAM).integers(0, 2**31 - 1))
            data = encoded_image(width, height, seed, self.spec.image_format, self.spec.jpeg_quality, self.spec.image_pattern)
            content.append({"type": "image_url", "image_url": {"url": data_url(data, mime_for(self.spec.image_format))}})
        content.append({"type": "text", "text": self._text(entry.input_tokens, rng)})
        body = request_body(self.workload, model_name, [{"role": "user", "content": content}], entry.output_tokens)
        return PreparedRequest(
            index=index, body=body, max_tokens=entry.output_tokens, text_tokens=entry.input_tokens, images=len(entry.images)
        )


@dataclass(frozen=True, slots=True)
class ReplaySchedule:
    """The send offsets of one replay window: the trace's, times `time_scale`, cut by num_requests / duration_s."""

    offsets_s: list[float]
    trace_length: int

    @property
    def mean_rate_rps(self) -> float:
        """Arrivals per second over the replay (all requests at once: their count)."""
        span = self.offsets_s[-1] if self.offsets_s else 0.0
        return (len(self.offsets_s) - 1) / span if span > 0 else float(len(self.offsets_s))

    def first_index(self, next_free_index: int) -> int:
        """The first request index at or after `next_free_index` that renders trace line 0, so request i of the
        window has the shape of line i (indexes below it are skipped, never reused)."""
        return next_free_index + (-next_free_index) % self.trace_length


def replay_schedule(workload: Workload, load: LoadSpec) -> ReplaySchedule:
    """The window of load mode `replay` (the workload must be a trace)."""
    check_trace_workload(load, workload)
    assert workload.trace is not None
    entries = load_trace(workload.trace.path)
    limit = load.num_requests if load.num_requests is not None else len(entries)
    offsets: list[float] = []
    for entry in entries[:limit]:
        offset = entry.offset_s * load.time_scale
        if load.duration_s is not None and offset >= load.duration_s:
            break
        offsets.append(offset)
    return ReplaySchedule(offsets_s=offsets, trace_length=len(entries))


def check_trace_workload(load: LoadSpec, workload: Workload) -> None:
    """Before anything runs: a trace workload's file reads cleanly, and load mode `replay` has a trace to follow."""
    if workload.trace is not None:
        load_trace(workload.trace.path)
    if load.mode == "replay" and workload.kind != "trace":
        raise ConfigError(
            f"load.mode replay sends requests at a trace's times: workload {workload.name!r} is kind "
            f"{workload.kind!r}, not 'trace' (see docs/traces.md), or choose another load mode"
        )
