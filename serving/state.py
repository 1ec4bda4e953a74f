"""What the routes share, kept on `app.state.autotune` (no module-level singletons)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request

from autotune.config import TunedConfig
from autotune.redact import redact_mapping
from serving.engines.base import Engine
from serving.metrics import ServingMetrics
from serving.prepare import RequestPreparer


@dataclass
class AppState:
    tuned: TunedConfig
    engine: Engine
    metrics: ServingMetrics
    model_name: str
    created: int
    preparer: RequestPreparer | None = None  # set by the lifespan

    def config_document(self) -> dict[str, Any]:
        return config_document(self.tuned, self.engine.describe())


def config_document(tuned: TunedConfig, engine_description: dict[str, Any]) -> dict[str, Any]:
    """GET /autotune/config: the loaded TunedConfig plus what is serving it. Secrets are masked: the API key,
    engine env values and engine args whose name looks secret (HF_TOKEN, ...) and passwords in URLs, since
    clients copy this document into benchmark results."""
    document = tuned.model_dump(mode="json")
    engine_config = document["engine_config"]
    for name in ("env", "extra_engine_args"):
        engine_config[name] = redact_mapping(engine_config.get(name) or {})
    simulated = bool(engine_description.get("simulated", False))
    document["engine"] = engine_description.get("engine", tuned.engine.value)
    document["simulated"] = simulated
    document["engine_details"] = engine_description
    return document


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.autotune
    return state
