"""Deterministic synthetic images, cached on disk.

Each image is a function of (width, height, seed, format, quality, pattern). Pattern `photo`: a
two-colour gradient with a few shapes and mild noise, so it compresses like a photo rather than like
pure noise (a 448x448 JPEG is tens of KB, as real uploads are). Pattern `noise`: i.i.d. uniform
random pixels, what vLLM's random-mm benchmark dataset sends (JPEG at PIL's default quality 75 there),
for like-for-like comparisons with `vllm bench serve`. Files are cached under `~/.cache/autotune/images`
(or `$AUTOTUNE_CACHE_DIR/images`), keyed by those parameters and a generator version.

Every seed gives different decoded pixels, which is what matters: vLLM's multimodal and prefix caches
key an image by a hash of its decoded pixels, so a repeated picture (not a repeated file name) is a
cache hit. A photo is one of `PHOTO_BASES` base pictures per size (rendered once per process, ~17 ms
each) with a block of seeded random pixels stamped at a seeded place (~1 ms with the JPEG encoding):
thousands of distinct images per second instead of ~50.
"""

from __future__ import annotations

import base64
import functools
import io
import os
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw

from autotune.cache import cache_root

ImageFormat = Literal["png", "jpeg"]
ImagePattern = Literal["photo", "noise"]
GENERATOR_VERSION = 2
_MIME = {"png": "image/png", "jpeg": "image/jpeg"}
PHOTO_BASES = 16
"""Base pictures per size; a photo's seed picks one and stamps its own pixels on it."""
STAMP_PX = 16
"""Side of the block of random pixels that makes each photo unique (smaller images: their whole side)."""


def image_cache_dir() -> Path:
    return cache_root() / "images"


def render_image(width: int, height: int, seed: int, pattern: ImagePattern = "photo") -> Image.Image:
    """The image of this seed: a stamped base picture (`photo`) or i.i.d. random pixels (`noise`)."""
    rng = np.random.default_rng(seed)
    if pattern == "noise":
        return Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8), mode="RGB")
    pixels = _photo_base(width, height, int(rng.integers(0, PHOTO_BASES))).copy()
    side_x, side_y = min(STAMP_PX, width), min(STAMP_PX, height)
    x = int(rng.integers(0, width - side_x + 1))
    y = int(rng.integers(0, height - side_y + 1))
    pixels[y : y + side_y, x : x + side_x] = rng.integers(0, 256, size=(side_y, side_x, 3), dtype=np.uint8)
    return Image.fromarray(pixels, mode="RGB")


@functools.lru_cache(maxsize=4 * PHOTO_BASES)
def _photo_base(width: int, height: int, variant: int) -> np.ndarray:
    """One base picture (read-only array): gradient, shapes and mild noise."""
    pixels = np.asarray(_render_photo(width, height, np.random.default_rng([width, height, variant])))
    pixels.setflags(write=False)
    return pixels


def _render_photo(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    start, end = rng.integers(0, 256, size=(2, 3))
    ramp = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
    tilt = np.linspace(0.0, 0.3, height, dtype=np.float32)[:, None, None]
    mix = np.clip(ramp + tilt, 0.0, 1.0)
    pixels = start[None, None, :] * (1.0 - mix) + end[None, None, :] * mix
    image = Image.fromarray(pixels.astype(np.uint8), mode="RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 8))):
        x0, x1 = sorted(int(v) for v in rng.integers(0, width, size=2))
        y0, y1 = sorted(int(v) for v in rng.integers(0, height, size=2))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)), fill=colour)
    noise = rng.normal(0.0, 6.0, size=(height, width, 3))
    noisy = np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(noisy, mode="RGB")


def encode_image(image: Image.Image, fmt: ImageFormat, jpeg_quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    if fmt == "jpeg":
        image.save(buffer, format="JPEG", quality=jpeg_quality)
    else:
        image.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def encoded_image(
    width: int, height: int, seed: int, fmt: ImageFormat = "jpeg", jpeg_quality: int = 85, pattern: ImagePattern = "photo"
) -> bytes:
    """The encoded image for these parameters, rendered now (no disk cache: request bodies are cached whole)."""
    return encode_image(render_image(width, height, seed, pattern), fmt, jpeg_quality)


def image_bytes(
    width: int, height: int, seed: int, fmt: ImageFormat = "jpeg", jpeg_quality: int = 85, pattern: ImagePattern = "photo"
) -> bytes:
    """The encoded image for these parameters, from the disk cache when present."""
    suffix = "jpg" if fmt == "jpeg" else "png"
    quality = f"-q{jpeg_quality}" if fmt == "jpeg" else ""
    kind = "" if pattern == "photo" else f"-{pattern}"
    path = image_cache_dir() / f"v{GENERATOR_VERSION}-{width}x{height}-s{seed}{quality}{kind}.{suffix}"
    try:
        return path.read_bytes()
    except OSError:
        pass
    data = encoded_image(width, height, seed, fmt, jpeg_quality, pattern)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)  # atomic: concurrent writers leave one complete file
    except OSError:
        pass  # a read-only cache only costs time
    return data


def data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def mime_for(fmt: ImageFormat) -> str:
    return _MIME[fmt]
