"""OpenAI chat-completions request schema (what our app accepts). Unknown fields are refused (400).

Sampling fields that the simulated engine does not model (temperature, top_p, penalties, ...) are
accepted and validated, then ignored; `n` must be 1.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from autotune.base_models import StrictTypesModel


class ImageURL(StrictTypesModel):
    url: Annotated[str, Field(min_length=1)]
    detail: Literal["auto", "low", "high"] | None = None


class TextPart(StrictTypesModel):
    type: Literal["text"]
    text: str


class ImagePart(StrictTypesModel):
    type: Literal["image_url"]
    image_url: ImageURL


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class ChatMessage(StrictTypesModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_call_id: str | None = None


class StreamOptions(StrictTypesModel):
    include_usage: bool = False
    continuous_usage_stats: bool = False


class ChatCompletionRequest(StrictTypesModel):
    model: str
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    seed: int | None = None
    ignore_eos: bool = False
    n: Literal[1] = 1
    stop: str | list[str] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    user: str | None = None
    logprobs: Literal[False] | None = None
    # vLLM sampling extensions (accepted, not modeled)
    top_k: int | None = None
    min_tokens: Annotated[int, Field(ge=0)] | None = None
    repetition_penalty: Annotated[float, Field(gt=0)] | None = None

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens
