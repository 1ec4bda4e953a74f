"""Dataset workloads: a JSONL file, one OpenAI chat request per line.

Each line: {"messages": [...], "max_tokens": 128 (optional)}. Message content is a string or a
list of parts: {"type": "text", "text": ...} or {"type": "image_url", "image_url": {"url": ...}}.
An image URL may be http(s), a data URL, or a path relative to the dataset's folder; local paths
may not leave that folder (absolute paths, `..` and symlinks out are refused). Local images are
inlined as base64 data URLs, so the server never reads the client's disk.
A bad line raises ConfigError naming the file, the line number and the reason.
"""

from __future__ import annotations

import json
import mimetypes
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from autotune.bench.images import data_url
from autotune.base_models import ClosedModel
from autotune.errors import ConfigError, format_validation_error
from serving.schemas import ContentPart, ImagePart, TextPart  # the wire format our server accepts: one definition


class ChatMessage(ClosedModel):
    role: Literal["system", "user", "assistant"]
    content: str | list[ContentPart]


class DatasetLine(ClosedModel):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_tokens: Annotated[int, Field(ge=1)] | None = None


_IMAGE_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp", ".gif": "image/gif"}


class _ImageResolver:
    """Turns image references into URLs the server accepts; local files become data URLs (cached)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder.resolve()
        self._cache: dict[Path, str] = {}

    def resolve(self, url: str) -> str:
        if url.startswith(("http://", "https://", "data:")):
            return url
        if "://" in url or url.startswith("file:"):
            raise ValueError(f"image URL scheme not allowed: {url!r} (use http(s), data: or a relative path)")
        relative = PurePosixPath(url.replace("\\", "/"))
        if relative.is_absolute() or Path(url).is_absolute():
            raise ValueError(f"image path must be relative to the dataset folder: {url!r}")
        if ".." in relative.parts:
            raise ValueError(f"image path may not contain '..': {url!r}")
        target = (self.folder / relative).resolve()
        if not target.is_relative_to(self.folder):
            raise ValueError(f"image path leaves the dataset folder: {url!r}")
        if target not in self._cache:
            if not target.is_file():
                raise ValueError(f"image file not found: {url!r}")
            mime = _IMAGE_MIME.get(target.suffix.lower()) or mimetypes.guess_type(target.name)[0]
            if mime is None or not mime.startswith("image/"):
                raise ValueError(f"not an image file type: {url!r} (use .png, .jpg, .jpeg, .webp or .gif)")
            self._cache[target] = data_url(target.read_bytes(), mime)
        return self._cache[target]


def _message_json(message: ChatMessage, images: _ImageResolver) -> dict[str, Any]:
    if isinstance(message.content, str):
        return {"role": message.role, "content": message.content}
    parts: list[dict[str, Any]] = []
    for part in message.content:
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})
        else:
            image_url: dict[str, Any] = {"url": images.resolve(part.image_url.url)}
            if part.image_url.detail is not None:
                image_url["detail"] = part.image_url.detail
            parts.append({"type": "image_url", "image_url": image_url})
    return {"role": message.role, "content": parts}


class DatasetEntry(BaseModel):
    """One validated line, ready to send: messages as JSON with images inlined."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    line: int
    messages: list[dict[str, Any]]
    max_tokens: int | None
    images: int


def load_dataset(path: str | Path) -> list[DatasetEntry]:
    source = Path(path)
    if not source.is_file():
        raise ConfigError(f"dataset.path: no such file: {source}")
    images = _ImageResolver(source.parent)
    entries: list[DatasetEntry] = []
    with source.open(encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            entries.append(_parse_line(raw, number, source, images))
    if not entries:
        raise ConfigError(f"{source}: the dataset has no requests")
    return entries


def _parse_line(raw: str, number: int, source: Path, images: _ImageResolver) -> DatasetEntry:
    where = f"{source}:{number}"
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: not valid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object with 'messages', got {type(data).__name__}")
    try:
        line = DatasetLine.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, where)) from None
    try:
        messages = [_message_json(message, images) for message in line.messages]
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    count = sum(
        1
        for message in line.messages
        if not isinstance(message.content, str)
        for part in message.content
        if isinstance(part, ImagePart)
    )
    return DatasetEntry(line=number, messages=messages, max_tokens=line.max_tokens, images=count)
