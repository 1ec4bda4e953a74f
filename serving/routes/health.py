from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from serving.state import AppState, get_state

router = APIRouter()


@router.get("/health")
async def health(state: Annotated[AppState, Depends(get_state)]) -> JSONResponse:
    """200 once the engine is ready (readiness), 503 before."""
    if state.engine.ready:
        return JSONResponse({"status": "ok"})
    return JSONResponse({"status": "loading"}, status_code=503)
