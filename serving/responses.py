"""OpenAI response bodies; SSE chunks are built as strings (one per token, so they must be cheap)."""

from __future__ import annotations

import json
from typing import Any

from serving.engines.base import FinishReason

SSE_DONE = "data: [DONE]\n\n"


class ChunkWriter:
    """`data: {chat.completion.chunk}\\n\\n` lines for one streamed response."""

    def __init__(self, completion_id: str, model: str, created: int) -> None:
        head = json.dumps(
            {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model},
            separators=(",", ":"),
        )
        self._prefix = "data: " + head[:-1] + ',"choices":[{"index":0,"delta":'
        self._usage_prefix = "data: " + head[:-1] + ',"choices":[],"usage":'

    def role(self) -> str:
        return self._prefix + '{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\n\n'

    def token(self, text: str, finish_reason: FinishReason | None) -> str:
        finish = "null" if finish_reason is None else f'"{finish_reason}"'
        return f'{self._prefix}{{"content":{json.dumps(text)}}},"logprobs":null,"finish_reason":{finish}}}]}}\n\n'

    def usage(self, prompt_tokens: int, completion_tokens: int) -> str:
        return self._usage_prefix + json.dumps(usage(prompt_tokens, completion_tokens), separators=(",", ":")) + "}\n\n"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion_body(
    completion_id: str,
    model: str,
    created: int,
    text: str,
    finish_reason: FinishReason | None,
    prompt_tokens: int,
    completion_tokens: int,
) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage(prompt_tokens, completion_tokens),
    }
