"""Render benchmark requests (JSON bodies as bytes, images inlined) before the measured window.

Request `i` of a workload is a pure function of (workload, i, model name): the same seed gives the
same bytes, in any process and any order.

Each seed owns a block of request indexes (`REQUESTS_PER_SEED`): seed k renders requests k * REQUESTS_PER_SEED
onwards, so runs with different seeds never repeat a synthetic image or prompt. A dataset has only its lines:
the j-th request of seed k reads the j-th line of the (shuffled) dataset, counted from the first line for an
even k and from the last line for an odd k. Two runs of adjacent seeds against one server (the tuner's warm-up
with seed + 1, then its measurement with the seed) thus never share a line while together they fit in the
dataset; `request_source.RequestSource` refuses a run that would send a line twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from autotune.bench.client import PreparedRequest
from autotune.bench.dataset import DatasetEntry, load_dataset
from autotune.bench.images import data_url, encoded_image, mime_for
from autotune.bench.request_body import request_body, request_rng
from autotune.bench.text import TokenCounter, fit_to_tokens, load_token_counter, make_text
from autotune.bench.trace import TraceRenderer
from autotune.bench.workload import DatasetSpec, SyntheticSpec, Workload

_SHARED_PREFIX_STREAM = 1_000_000_007  # seed stream of the shared system prompt, apart from request streams
REQUESTS_PER_SEED = 10_000_000
"""Request indexes owned by one seed: seed k renders requests k * REQUESTS_PER_SEED onwards."""
RENDER_VERSION = 1
"""Bump when the bytes a request index renders to change (it names the cached bodies, see body_cache.py)."""


def dataset_position(index: int, lines: int) -> int:
    """The position in the dataset's (shuffled) order that request `index` reads (see the module docstring)."""
    seed, number = divmod(index, REQUESTS_PER_SEED)
    number %= lines
    return number if seed % 2 == 0 else lines - 1 - number


class Renderer(Protocol):
    @property
    def lines(self) -> int | None:
        """A dataset's line count (the distinct requests it can send); None for a synthetic workload."""

    def render(self, index: int, model_name: str) -> PreparedRequest: ...


class _SyntheticRenderer:
    def __init__(self, workload: Workload, spec: SyntheticSpec) -> None:
        self.workload = workload
        self.spec = spec
        self.count: TokenCounter | None = load_token_counter(spec.tokenizer) if spec.tokenizer else None
        self._images: dict[tuple[int, int, int], str] = {}
        self._prefixes: dict[int, str] = {}

    @property
    def lines(self) -> int | None:
        return None

    def _text(self, num_tokens: int, rng: np.random.Generator) -> str:
        text = make_text(num_tokens, rng)
        return fit_to_tokens(text, num_tokens, self.count, rng) if self.count and num_tokens else text

    def _shared_prefix(self, num_tokens: int) -> str:
        if num_tokens not in self._prefixes:
            self._prefixes[num_tokens] = self._text(num_tokens, request_rng(self.workload.seed, _SHARED_PREFIX_STREAM))
        return self._prefixes[num_tokens]

    def _image_url(self, width: int, height: int, image_seed: int) -> str:
        spec = self.spec.images
        assert spec is not None
        key = (width, height, image_seed)
        if key in self._images:
            return self._images[key]
        url = data_url(encoded_image(width, height, image_seed, spec.format, spec.jpeg_quality, spec.pattern), mime_for(spec.format))
        if spec.pool_size is not None:  # a pool repeats its images: keep them; distinct ones are used once
            self._images[key] = url
        return url

    def render(self, index: int, model_name: str) -> PreparedRequest:
        rng = request_rng(self.workload.seed, index)
        input_tokens = max(1, self.spec.input_tokens.sample(rng))
        max_tokens = max(1, self.spec.output_tokens.sample(rng))
        shared = round(input_tokens * self.spec.shared_prefix_fraction)
        messages: list[dict[str, Any]] = []
        if shared:
            messages.append({"role": "system", "content": self._shared_prefix(shared)})
        content: list[dict[str, Any]] = []
        images = self.spec.images
        count = images.count.sample(rng) if images else 0
        for slot in range(count):
            assert images is not None
            size = images.sizes[int(rng.integers(0, len(images.sizes)))]
            serial = index * 64 + slot
            if images.pool_size is not None:
                serial %= images.pool_size
            image_seed = int(request_rng(self.workload.seed, serial, 7).integers(0, 2**31 - 1))
            content.append({"type": "image_url", "image_url": {"url": self._image_url(size.width, size.height, image_seed)}})
        content.append({"type": "text", "text": self._text(input_tokens - shared, rng)})
        messages.append({"role": "user", "content": content})
        body = request_body(self.workload, model_name, messages, max_tokens)
        return PreparedRequest(index=index, body=body, max_tokens=max_tokens, text_tokens=input_tokens, images=count)


class _DatasetRenderer:
    def __init__(self, workload: Workload, spec: DatasetSpec) -> None:
        self.workload = workload
        self.spec = spec
        self.entries: list[DatasetEntry] = load_dataset(spec.path)
        self.order = np.arange(len(self.entries))
        if spec.shuffle:
            self.order = request_rng(workload.seed, 11).permutation(len(self.entries))

    @property
    def lines(self) -> int:
        return len(self.entries)

    def render(self, index: int, model_name: str) -> PreparedRequest:
        entry = self.entries[int(self.order[dataset_position(index, len(self.entries))])]
        max_tokens = entry.max_tokens or max(1, self.spec.output_tokens.sample(request_rng(self.workload.seed, index)))
        body = request_body(self.workload, model_name, entry.messages, max_tokens)
        return PreparedRequest(index=index, body=body, max_tokens=max_tokens, images=entry.images)


def make_renderer(workload: Workload) -> Renderer:
    """The workload's renderer; loads the dataset or trace (and checks it) once."""
    if workload.synthetic is not None:
        return _SyntheticRenderer(workload, workload.synthetic)
    if workload.trace is not None:
        return TraceRenderer(workload, workload.trace)
    assert workload.dataset is not None
    return _DatasetRenderer(workload, workload.dataset)


def request_renderer(workload: Workload) -> Callable[[int, str], PreparedRequest]:
    """`render(index, model_name)`; loads the dataset (and checks it) once."""
    return make_renderer(workload).render


def build_requests(workload: Workload, n: int, model_name: str, *, first_index: int = 0) -> list[PreparedRequest]:
    """Requests `first_index .. first_index + n - 1`, bodies rendered to bytes."""
    render = request_renderer(workload)
    return [render(index, model_name) for index in range(first_index, first_index + n)]
