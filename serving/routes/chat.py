"""POST /v1/chat/completions (OpenAI-compatible, streaming as SSE)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from serving.engines.base import EngineUnavailable, GenerationRequest, RequestRejected, TokenEvent
from serving.errors import ApiError, error_body, from_validation_error
from serving.responses import SSE_DONE, ChunkWriter, completion_body
from serving.schemas import ChatCompletionRequest
from serving.state import AppState, get_state

router = APIRouter()


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(
    request: Request, state: Annotated[AppState, Depends(get_state)]
) -> StreamingResponse | JSONResponse:
    arrived = time.monotonic()
    try:
        body = ChatCompletionRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise from_validation_error(exc) from None
    if body.model != state.model_name:
        raise ApiError(
            404,
            f"The model `{body.model}` does not exist.",
            type="not_found_error",
            param="model",
            code="model_not_found",
        )
    max_queued = state.tuned.serving.max_queued_requests
    if state.engine.stats().queue_depth >= max_queued:
        raise ApiError(
            429,
            f"Too many requests waiting (max_queued_requests {max_queued}); retry later",
            type="rate_limit_error",
            code="queue_full",
            headers={"Retry-After": "1"},
        )
    if not state.engine.ready or state.preparer is None:
        raise ApiError(503, "The engine is not ready", type="service_unavailable_error", code=503)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    generation = await state.preparer.prepare(body, completion_id)
    try:
        generation = state.engine.check(generation)  # refusals are a 4xx before any byte is sent
    except RequestRejected as exc:
        raise ApiError(400, str(exc), param=exc.param, code="invalid_value") from None
    created = int(time.time())
    state.metrics.prompt_tokens.inc(generation.prompt_tokens)
    if body.stream:
        state.metrics.count_request(200)
        writer = ChunkWriter(completion_id, state.model_name, created)
        return StreamingResponse(
            _stream(state, generation, writer, arrived),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )
    texts: list[str] = []
    last: TokenEvent | None = None
    try:
        async with aclosing(state.engine.generate(generation)) as events:  # type: ignore[type-var]
            async for last in events:
                if not texts:
                    state.metrics.ttft.observe(time.monotonic() - arrived)
                texts.append(last.text)
    except EngineUnavailable as exc:
        raise ApiError(503, str(exc), type="service_unavailable_error", code=503) from None
    finally:
        state.metrics.output_tokens.inc(len(texts))
    state.metrics.count_request(200)
    return JSONResponse(
        completion_body(
            completion_id,
            state.model_name,
            created,
            "".join(texts),
            last.finish_reason if last is not None else None,
            generation.prompt_tokens,
            len(texts),
        )
    )


async def _stream(
    state: AppState, generation: GenerationRequest, writer: ChunkWriter, arrived: float
) -> AsyncIterator[str]:
    """Role chunk, one chunk per token (the last carries finish_reason), a usage chunk, [DONE]."""
    count = 0
    yield writer.role()
    try:
        async with aclosing(state.engine.generate(generation)) as events:  # type: ignore[type-var]
            async for event in events:
                if count == 0:
                    state.metrics.ttft.observe(time.monotonic() - arrived)
                count += 1
                yield writer.token(event.text, event.finish_reason)
    except EngineUnavailable as exc:
        yield "data: " + json.dumps(error_body(str(exc), type="service_unavailable_error", code=503)) + "\n\n"
        return
    finally:
        state.metrics.output_tokens.inc(count)
    yield writer.usage(generation.prompt_tokens, count)
    yield SSE_DONE
