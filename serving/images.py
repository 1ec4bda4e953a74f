"""Images in chat requests: data URLs, http(s) fetches (through the URL policy) and decoding.

`prepare_image` is synchronous and CPU-bound: callers run it in the preprocessing pool, never on
the event loop. It reads the image header first and refuses too many pixels BEFORE decoding
(decompression bombs), then decodes and resizes the way Qwen-VL's processor would.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import ipaddress
import warnings
from dataclasses import dataclass
from urllib.parse import urljoin, urlunsplit

import httpx
from PIL import Image, UnidentifiedImageError

from autotune.errors import AutotuneError
from serving.engines.base import ImageInput
from serving.security import ImageUrlPolicy, resolve_checked
from serving.tokens import IMAGE_WRAPPER_TOKENS, VisionGrid, smart_resize

MAX_REDIRECTS = 3
_CHUNK_BYTES = 64 * 1024


class ImageRejected(AutotuneError):
    """An image that cannot be used (answered as a 400)."""


@dataclass(frozen=True, slots=True)
class ImageLimits:
    max_image_bytes: int
    max_image_pixels: int
    fetch_timeout_s: float


def decode_data_url(url: str, limits: ImageLimits) -> bytes:
    """`data:image/<type>;base64,<payload>` -> bytes."""
    header, comma, payload = url.partition(",")
    if not comma:
        raise ImageRejected("data URL has no ',' separating the header from the data")
    media_type = header[len("data:") :].split(";", 1)[0].strip().lower()
    if not header.endswith(";base64"):
        raise ImageRejected("data URL must be base64-encoded (data:image/...;base64,...)")
    if media_type and not media_type.startswith("image/"):
        raise ImageRejected(f"data URL media type must be image/* (got {media_type!r})")
    if len(payload) * 3 // 4 > limits.max_image_bytes + 3:
        raise ImageRejected(f"image is larger than max_image_bytes ({limits.max_image_bytes} bytes)")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ImageRejected("image data is not valid base64") from None
    if len(data) > limits.max_image_bytes:
        raise ImageRejected(f"image is larger than max_image_bytes ({limits.max_image_bytes} bytes)")
    if not data:
        raise ImageRejected("image data is empty")
    return data


def prepare_image(data: bytes, limits: ImageLimits, grid: VisionGrid) -> ImageInput:
    """Check, decode and resize one image; returns what the engine needs (size, tokens, content hash)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > limits.max_image_pixels:
                raise ImageRejected(
                    f"image has {width}x{height} = {width * height} pixels, more than max_image_pixels "
                    f"({limits.max_image_pixels})"
                )
            target_h, target_w = smart_resize(height, width, grid)
            image.draft("RGB", (target_w, target_h))  # JPEG: decode at reduced scale when possible
            image = image.convert("RGB")
            if image.size != (target_w, target_h):
                image = image.resize((target_w, target_h), Image.Resampling.BICUBIC)
    except ImageRejected:
        raise
    except ValueError as exc:  # aspect ratio
        raise ImageRejected(f"image cannot be used: {exc}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, EOFError, Image.DecompressionBombError, Warning):
        raise ImageRejected("image could not be decoded (unsupported or corrupt image data)") from None
    tokens = (target_h // grid.factor) * (target_w // grid.factor) + IMAGE_WRAPPER_TOKENS
    return ImageInput(
        width=target_w, height=target_h, tokens=tokens, content_hash=hashlib.blake2b(data, digest_size=16).hexdigest()
    )


async def fetch_image(url: str, policy: ImageUrlPolicy, client: httpx.AsyncClient, limits: ImageLimits) -> bytes:
    """GET an image URL, connecting only to addresses the policy allows; redirects are re-checked."""
    try:
        async with asyncio.timeout(limits.fetch_timeout_s):
            for _ in range(MAX_REDIRECTS + 1):
                target = await resolve_checked(url, policy)
                address = target.addresses[0]
                ip_host = (
                    f"[{address}]" if isinstance(ipaddress.ip_address(address), ipaddress.IPv6Address) else address
                )
                parts = target.url
                direct = urlunsplit((parts.scheme, f"{ip_host}:{target.port}", parts.path or "/", parts.query, ""))
                default_port = 443 if parts.scheme == "https" else 80
                host_header = target.host if target.port == default_port else f"{target.host}:{target.port}"
                request = client.build_request(
                    "GET", direct, headers={"Host": host_header}, extensions={"sni_hostname": target.host}
                )
                response = await client.send(request, stream=True, follow_redirects=False)
                try:
                    if response.is_redirect and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    if response.status_code != 200:
                        raise ImageRejected(f"image URL answered HTTP {response.status_code}")
                    return await _read_limited(response, limits.max_image_bytes)
                finally:
                    await response.aclose()
            raise ImageRejected(f"image URL redirected more than {MAX_REDIRECTS} times")
    except TimeoutError:
        raise ImageRejected(f"image URL did not answer within {limits.fetch_timeout_s} s") from None
    except httpx.HTTPError as exc:
        raise ImageRejected(f"image URL could not be fetched: {type(exc).__name__}") from None


async def _read_limited(response: httpx.Response, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise ImageRejected(f"image is larger than max_image_bytes ({max_bytes} bytes)")
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.aiter_bytes(_CHUNK_BYTES):
        total += len(chunk)
        if total > max_bytes:
            raise ImageRejected(f"image is larger than max_image_bytes ({max_bytes} bytes)")
        chunks.append(chunk)
    return b"".join(chunks)
