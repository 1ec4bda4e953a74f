"""Prompt token counting without vLLM: text via the model's tokenizer if `tokenizers` is installed
(else ~4 characters a token), images the way Qwen-VL does (patch 16, 2x2 merge, min/max pixels)."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from autotune.hub import HubModelError, model_files_dir
from autotune.model_files import usable_model_dir

log = logging.getLogger("autotune.serve")

MESSAGE_OVERHEAD_TOKENS = 4  # <|im_start|>role\n ... <|im_end|>\n
ASSISTANT_PROMPT_TOKENS = 3  # <|im_start|>assistant\n
IMAGE_WRAPPER_TOKENS = 2  # <|vision_start|> ... <|vision_end|>
MAX_ASPECT_RATIO = 200


@dataclass(frozen=True, slots=True)
class VisionGrid:
    """Qwen3-VL defaults (preprocessor_config.json of the model overrides them; a hub id's from the hub cache)."""

    patch_size: int = 16
    merge_size: int = 2
    min_pixels: int = 65_536
    max_pixels: int = 16_777_216

    @property
    def factor(self) -> int:
        return self.patch_size * self.merge_size

    @classmethod
    def from_model_dir(cls, path: str | Path) -> VisionGrid:
        try:
            source = model_files_dir(path) / "preprocessor_config.json"
        except HubModelError:
            return cls()
        try:
            data = json.loads(source.read_text())
        except (OSError, ValueError):
            return cls()
        size = data.get("size") or {}
        return cls(
            patch_size=int(data.get("patch_size", cls.patch_size)),
            merge_size=int(data.get("merge_size", cls.merge_size)),
            min_pixels=int(size.get("shortest_edge", data.get("min_pixels", cls.min_pixels))),
            max_pixels=int(size.get("longest_edge", data.get("max_pixels", cls.max_pixels))),
        )


def smart_resize(height: int, width: int, grid: VisionGrid) -> tuple[int, int]:
    """Qwen-VL's resize: both sides multiples of patch*merge, pixel count within [min_pixels, max_pixels].

    Raises ValueError for an extreme aspect ratio (the processor refuses those too).
    """
    factor = grid.factor
    if max(height, width) / max(1, min(height, width)) > MAX_ASPECT_RATIO:
        raise ValueError(f"aspect ratio must be below {MAX_ASPECT_RATIO} (got {width}x{height})")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > grid.max_pixels:
        beta = math.sqrt(height * width / grid.max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < grid.min_pixels:
        beta = math.sqrt(grid.min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def image_tokens(height: int, width: int, grid: VisionGrid) -> int:
    """Tokens of the image itself (resized grid / merge^2), without the vision start/end markers."""
    h_bar, w_bar = smart_resize(height, width, grid)
    return (h_bar // grid.factor) * (w_bar // grid.factor)


class TextTokenCounter(Protocol):
    def count(self, text: str) -> int: ...


class ApproxTokenCounter:
    """About 4 characters a token: a cheap, deterministic stand-in for a tokenizer."""

    name = "approx-4-chars"

    def count(self, text: str) -> int:
        return math.ceil(len(text) / 4)


class HFTokenCounter:
    """The model's own tokenizer.json through the `tokenizers` library."""

    name = "tokenizers"

    def __init__(self, tokenizer_json: Path) -> None:
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(tokenizer_json))

    def count(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)


def make_token_counter(model: str | Path) -> TextTokenCounter:
    try:
        tokenizer_json = Path(usable_model_dir(model_files_dir(model))) / "tokenizer.json"
    except HubModelError:
        return ApproxTokenCounter()
    if tokenizer_json.is_file():
        try:
            return HFTokenCounter(tokenizer_json)
        except ImportError:
            pass
        except Exception as exc:  # a broken tokenizer file must not stop the server
            log.warning("could not load %s (%s); counting ~4 characters a token", tokenizer_json, exc)
    return ApproxTokenCounter()
