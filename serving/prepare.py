"""A chat request -> GenerationRequest: count prompt tokens, fetch and preprocess images.

Image decoding runs in the preprocessing pool (`preprocessing_workers` threads), never on the event
loop; http(s) images go through the URL policy (`serving.security`).
"""

from __future__ import annotations

import asyncio
import hashlib
from concurrent.futures import Executor
from dataclasses import dataclass

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
        for m_index, message in enumerate(body.messages):
            text_tokens += MESSAGE_OVERHEAD_TOKENS
            content = message.content
            if isinstance(content, str):
                text_tokens += self.counter.count(content)
            elif content is not None:
                for p_index, part in enumerate(content):
                    if isinstance(part, TextPart):
                        text_tokens += self.counter.count(part.text)
                    elif isinstance(part, ImagePart):
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
