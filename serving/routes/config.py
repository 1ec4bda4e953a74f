from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from serving.state import AppState, get_state

router = APIRouter()


@router.get("/autotune/config")
async def loaded_config(state: Annotated[AppState, Depends(get_state)]) -> dict[str, Any]:
    """The TunedConfig being served (API key masked), its provenance, and the engine (simulated or not)."""
    return state.config_document()
