"""POST /reset_prefix_cache, /reset_mm_cache, /reset_encoder_cache: vLLM 0.24's cache-reset routes.

vLLM registers them only with `VLLM_SERVER_DEV_MODE=1` (vllm/entrypoints/serve/dev/cache/api_router.py); the app
does the same (`serving.app.dev_mode_enabled`), so a benchmark that resets caches between windows behaves alike on
both servers. As vLLM's, they answer 200 with an empty body whether or not the engine could reset (it cannot
forget the prefix cache while requests are running; the engine logs that).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from serving.state import AppState, get_state

router = APIRouter()


@router.post("/reset_prefix_cache")
async def reset_prefix_cache(state: Annotated[AppState, Depends(get_state)]) -> Response:
    state.engine.reset_prefix_cache()
    return Response(status_code=200)


@router.post("/reset_mm_cache")
async def reset_mm_cache(state: Annotated[AppState, Depends(get_state)]) -> Response:
    state.engine.reset_mm_cache()
    return Response(status_code=200)


@router.post("/reset_encoder_cache")
async def reset_encoder_cache(state: Annotated[AppState, Depends(get_state)]) -> Response:
    state.engine.reset_encoder_cache()
    return Response(status_code=200)
