from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from serving.state import AppState, get_state

router = APIRouter()


@router.get("/v1/models")
async def list_models(state: Annotated[AppState, Depends(get_state)]) -> dict[str, Any]:
    engine_config = state.tuned.engine_config
    return {
        "object": "list",
        "data": [
            {
                "id": state.model_name,
                "object": "model",
                "created": state.created,
                "owned_by": "autotune",
                "root": engine_config.model,
                "max_model_len": engine_config.max_model_len
                or state.engine.describe().get("resolved_settings", {}).get("max_model_len"),
            }
        ],
    }
