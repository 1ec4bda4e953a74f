"""Deterministic synthetic images, cached on disk.

Each image is a function of (width, height, seed, format, quality, pattern). Pattern `photo`: a
two-colour gradient with a few shapes and mild noise, so it compresses like a photo rather than like
pure noise (a 448x448 JPEG is tens of KB, as real uploads are). Pattern `noise`: i.i.d. uniform
random pixels, what vLLM's random-mm benchmark dataset sends (JPEG at PIL's default quality 75 there),
for like-for-like comparisons with `vllm bench serve`. Files are cached under `~/.cache/autotune/images`
(or `$AUTOTUNE_CACHE_DIR/images`), keyed by those parameters and a generator version.
"""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw

ImageFormat = Literal["png", "jpeg"]
ImagePattern = Literal["photo", "noise"]
_GENERATOR_VERSION = 1
_MIME = {"png": "image/png", "jpeg": "image/jpeg"}


def image_cache_dir() -> Path:
    root = os.environ.get("AUTOTUNE_CACHE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "autotune"
    return base / "images"


def render_image(width: int, height: int, seed: int, pattern: ImagePattern = "photo") -> Image.Image:
    rng = np.random.default_rng(seed)
    if pattern == "noise":
        return Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8), mode="RGB")
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


def image_bytes(
    width: int, height: int, seed: int, fmt: ImageFormat = "jpeg", jpeg_quality: int = 85, pattern: ImagePattern = "photo"
) -> bytes:
    """The encoded image for these parameters, from the disk cache when present."""
    suffix = "jpg" if fmt == "jpeg" else "png"
    quality = f"-q{jpeg_quality}" if fmt == "jpeg" else ""
    kind = "" if pattern == "photo" else f"-{pattern}"
    path = image_cache_dir() / f"v{_GENERATOR_VERSION}-{width}x{height}-s{seed}{quality}{kind}.{suffix}"
    try:
        return path.read_bytes()
    except OSError:
        pass
    data = encode_image(render_image(width, height, seed, pattern), fmt, jpeg_quality)
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
