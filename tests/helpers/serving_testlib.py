"""Small helpers shared by the serving tests (images, configs, SSE parsing)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

from PIL import Image

from autotune.config import EngineConfig, EngineKind, ServingSettings, TunedConfig
from helpers.servers import MODEL_DIR

MODEL_NAME = Path(MODEL_DIR).name


def png_bytes(width: int, height: int, color: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def write_simulated_config(
    path: Path, engine_config: EngineConfig | None = None, serving: ServingSettings | None = None
) -> Path:
    tuned = TunedConfig(
        engine=EngineKind.SIMULATED,
        engine_config=engine_config or EngineConfig(model=MODEL_DIR, max_model_len=4096),
        serving=serving or ServingSettings(),
    )
    return tuned.write(path)


def image_chat(
    image_url: str, *, text: str = "Describe the image.", max_tokens: int = 8, **extra: Any
) -> dict[str, Any]:
    return {
        "model": MODEL_NAME,
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": image_url}}],
            }
        ],
        "max_tokens": max_tokens,
        **extra,
    }


def sse_events(body: str) -> list[str]:
    """The `data:` payloads of an SSE body, in order."""
    events = []
    for block in body.split("\n\n"):
        if block.strip():
            assert block.startswith("data: "), block
            events.append(block[len("data: ") :])
    return events


def sse_json(body: str) -> tuple[list[dict[str, Any]], str]:
    events = sse_events(body)
    return [json.loads(event) for event in events[:-1]], events[-1]
