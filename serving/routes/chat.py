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


@router.post("/v1/chat/completions")
async def chat_completions(request: Request, state: Annotated[AppState, Depends(get_state)]):  # type: ignore[no-untyped-def]
    arrived = time.monotonic()
    try:
        body = ChatCompletionRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise from_validation_error(exc) from None
    if body.model != state.model_name:
        raise ApiError(
            404, f"The model `{body.model}` does not exist.", type="not_found_error", param="model", code="model_not_found"
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
    events = state.engine.generate(generation)
    first = await _first_event(events)  # engine refusals become a 4xx before any byte is sent
    state.metrics.ttft.observe(time.monotonic() - arrived)
    created = int(time.time())
    if body.stream:
        state.metrics.count_request(200)
        return StreamingResponse(
            _stream(state, events, first, generation, ChunkWriter(completion_id, state.model_name, created)),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )
    async with aclosing(events):
        texts = [first.text]
        last = first
        while last.finish_reason is None:
            last = await anext(events)
            texts.append(last.text)
    state.metrics.count_request(200)
    state.metrics.output_tokens.inc(len(texts))
    state.metrics.prompt_tokens.inc(generation.prompt_tokens)
    return JSONResponse(
        completion_body(
            completion_id, state.model_name, created, "".join(texts), last.finish_reason, generation.prompt_tokens, len(texts)
        )
    )


async def _first_event(events: AsyncIterator[TokenEvent]) -> TokenEvent:
    try:
        return await anext(events)
    except RequestRejected as exc:
        await _close(events)
        raise ApiError(400, str(exc), param=exc.param, code="invalid_value") from None
    except EngineUnavailable as exc:
        await _close(events)
        raise ApiError(503, str(exc), type="service_unavailable_error", code=503) from None
    except StopAsyncIteration:
        raise ApiError(503, "The engine produced no output", type="service_unavailable_error", code=503) from None


async def _close(events: AsyncIterator[TokenEvent]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()


async def _stream(
    state: AppState,
    events: AsyncIterator[TokenEvent],
    first: TokenEvent,
    generation: GenerationRequest,
    writer: ChunkWriter,
) -> AsyncIterator[str]:
    count = 1
    async with aclosing(events):  # type: ignore[type-var]
        yield writer.role() + writer.token(first.text, first.finish_reason)
        last = first
        try:
            while last.finish_reason is None:
                last = await anext(events)
                count += 1
                yield writer.token(last.text, last.finish_reason)
        except EngineUnavailable as exc:
            yield "data: " + json.dumps(error_body(str(exc), type="service_unavailable_error", code=503)) + "\n\n"
            return
        finally:
            state.metrics.output_tokens.inc(count)
            state.metrics.prompt_tokens.inc(generation.prompt_tokens)
    yield writer.usage(generation.prompt_tokens, count)
    yield SSE_DONE
