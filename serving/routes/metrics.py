from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from serving.state import AppState, get_state

router = APIRouter()


@router.get("/metrics")
async def metrics(state: Annotated[AppState, Depends(get_state)]) -> Response:
    body, content_type = state.metrics.render()
    return Response(body, media_type=content_type)
