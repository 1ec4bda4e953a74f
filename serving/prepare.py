"""A chat request -> GenerationRequest: count prompt tokens, fetch and preprocess images.

Image decoding runs in the preprocessing pool (`preprocessing_workers` threads), never on the event
loop; http(s) images go through the URL policy (`serving.security`).
"""

from __future__ import annotations

import asyncio
import hashlib
from concurrent.futures import Executor
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import httpx

from serving.engines.base import GenerationRequest, ImageInput
from serving.errors import ApiError, bad_request
from serving.images import ImageLimits, ImageRejected, decode_data_url, fetch_image, prepare_image
from serving.schemas import ChatCompletionRequest, ImagePart, TextPart
from serving.security import ImageUrlPolicy, UrlRejected
from serving.tokens import ASSISTANT_PROMPT_TOKENS, MESSAGE_OVERHEAD_TOKENS, TextTokenCounter, VisionGrid


@dataclass(frozen=True, slots=True)
class _PendingImage:
    url: str
    param: str


@dataclass(frozen=True, slots=True)
class _Segment:
    kind: Literal["message", "text", "image"]  # a message: its role; an image: its index among the images
    value: str
    tokens: int


def _prompt_prefixes(layout: list[_Segment], images: Sequence[ImageInput]) -> tuple[tuple[str, int], ...]:
    """A chained hash of the prompt and its token count after every content part, then with the assistant header."""
    chain = hashlib.blake2b(digest_size=16)
    tokens = 0
    points: list[tuple[str, int]] = []
    for segment in layout:
        if segment.kind == "image":
            image = images[int(segment.value)]
            chain.update(b"\x00image\x00" + image.content_hash.encode())
            tokens += image.tokens
        else:
            chain.update(b"\x00" + segment.kind.encode() + b"\x00" + segment.value.encode())
            tokens += segment.tokens
        if segment.kind != "message":
            points.append((chain.hexdigest(), tokens))
    chain.update(b"\x00assistant")
    points.append((chain.hexdigest(), tokens + ASSISTANT_PROMPT_TOKENS))
    return tuple(points)


@dataclass
class RequestPreparer:
    counter: TextTokenCounter
    grid: VisionGrid
    limits: ImageLimits
    policy: ImageUrlPolicy
    max_images: int
    executor: Executor
    client: httpx.AsyncClient

    async def prepare(self, body: ChatCompletionRequest, request_id: str) -> GenerationRequest:
        text_tokens = ASSISTANT_PROMPT_TOKENS
        pending: list[_PendingImage] = []
        prefix_hash: str | None = None
        prefix_tokens = 0
        layout: list[_Segment] = []  # the prompt in order, for its prefix hashes once the images are known
        for m_index, message in enumerate(body.messages):
            text_tokens += MESSAGE_OVERHEAD_TOKENS
            layout.append(_Segment("message", message.role, MESSAGE_OVERHEAD_TOKENS))
            content = message.content
            if isinstance(content, str):
                count = self.counter.count(content)
                text_tokens += count
                layout.append(_Segment("text", content, count))
            elif content is not None:
                for p_index, part in enumerate(content):
                    if isinstance(part, TextPart):
                        count = self.counter.count(part.text)
                        text_tokens += count
                        layout.append(_Segment("text", part.text, count))
                    elif isinstance(part, ImagePart):
                        layout.append(_Segment("image", str(len(pending)), 0))
                        pending.append(
                            _PendingImage(part.image_url.url, f"messages[{m_index}].content[{p_index}].image_url.url")
                        )
            if m_index == 0 and message.role in ("system", "developer") and isinstance(content, str):
                prefix_hash = hashlib.blake2b(content.encode(), digest_size=16).hexdigest()
                prefix_tokens = text_tokens
        if len(pending) > self.max_images:
            raise bad_request(
                f"At most {self.max_images} image(s) may be provided in one request (got {len(pending)})",
                param="messages",
            )
        images = await asyncio.gather(*(self._load(image) for image in pending))
        return GenerationRequest(
            request_id=request_id,
            prompt_tokens=text_tokens + sum(image.tokens for image in images),
            max_tokens=body.requested_max_tokens,
            images=tuple(images),
            ignore_eos=body.ignore_eos,
            seed=body.seed,
            prefix_hash=prefix_hash,
            prefix_tokens=prefix_tokens,
            prompt_prefixes=_prompt_prefixes(layout, images),
        )

    async def _load(self, image: _PendingImage) -> ImageInput:
        try:
            if image.url.startswith("data:"):
                data = decode_data_url(image.url, self.limits)
            elif image.url.startswith(("http://", "https://")):
                data = await fetch_image(image.url, self.policy, self.client, self.limits)
            else:
                raise ImageRejected("image_url.url must be a data: URL or an http(s) URL")
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.executor, prepare_image, data, self.limits, self.grid)
        except (ImageRejected, UrlRejected) as exc:
            raise ApiError(400, str(exc), param=image.param, code="invalid_image") from None
