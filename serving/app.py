"""Our OpenAI-compatible app around an `Engine` (the simulated one; vLLM serves itself).

`create_app` is a factory: state lives on `app.state.autotune`, the lifespan starts and always
stops the engine, one router per resource, errors are OpenAI-style JSON.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from autotune.config import TunedConfig
from serving.asgi_guard import AutotuneGuard, GuardOptions
from serving.engines.base import Engine
from serving.errors import ApiError, error_body
from serving.images import ImageLimits
from serving.announce import announce_start_failed
from serving.metrics import ServingMetrics
from serving.prepare import RequestPreparer
from serving.routes import cache, chat, config, health, metrics, models
from serving.security import ImageUrlPolicy
from serving.state import AppState
from serving.tokens import TextTokenCounter, VisionGrid, make_token_counter

log = logging.getLogger("autotune.serve")

MAX_PREPROCESSING_THREADS = 32
DEV_MODE_ENV = "VLLM_SERVER_DEV_MODE"


def dev_mode_enabled(tuned: TunedConfig, environ: Mapping[str, str]) -> bool:
    """vLLM's `VLLM_SERVER_DEV_MODE` (an integer, as vLLM parses it), from the engine's env or ours."""
    value = tuned.engine_config.env.get(DEV_MODE_ENV, environ.get(DEV_MODE_ENV, "0"))
    try:
        return bool(int(value))
    except ValueError:
        return False


def create_app(tuned: TunedConfig, engine: Engine, *, token_counter: TextTokenCounter | None = None) -> FastAPI:
    engine_config = tuned.engine_config
    settings = tuned.serving
    state = AppState(
        tuned=tuned,
        engine=engine,
        metrics=ServingMetrics(engine),
        model_name=engine_config.name_for_clients,
        created=int(time.time()),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        threads = min(
            MAX_PREPROCESSING_THREADS,
            (engine_config.preprocessing_workers or 1) * (engine_config.api_server_count or 1),
        )
        executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="preprocess")
        client = httpx.AsyncClient(trust_env=False, follow_redirects=False, timeout=settings.image_fetch_timeout_s)
        limit_mm = engine_config.mm_item_limit("image")
        state.preparer = RequestPreparer(
            counter=token_counter or make_token_counter(engine_config.model),
            grid=VisionGrid.from_model_dir(engine_config.model),
            limits=ImageLimits(settings.max_image_bytes, settings.max_image_pixels, settings.image_fetch_timeout_s),
            policy=ImageUrlPolicy.from_settings(settings),
            max_images=min(settings.max_images_per_request, limit_mm if limit_mm is not None else 1 << 30),
            executor=executor,
            client=client,
        )
        try:
            await engine.start()
        except Exception as exc:
            announce_start_failed(exc)
            raise
        try:
            yield
        finally:
            await engine.stop()
            await client.aclose()
            executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="autotune serve",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.autotune = state
    for module in (chat, models, health, metrics, config):
        app.include_router(module.router)
    if dev_mode_enabled(tuned, os.environ):  # as vLLM: the cache-reset routes only in dev mode
        log.warning("%s=1: the cache-reset routes (POST /reset_prefix_cache, ...) are enabled", DEV_MODE_ENV)
        app.include_router(cache.router)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        state.metrics.count_request(exc.status, exc.type)
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body(str(exc), type="invalid_request_error", code="invalid_value"), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error_type = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(
            error_body(str(exc.detail), type=error_type, code=exc.status_code),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    api_key = settings.api_key.get_secret_value() if settings.api_key is not None else None
    app.add_middleware(
        AutotuneGuard,  # type: ignore[arg-type]
        options=GuardOptions(
            engine=engine.kind.value,
            max_request_bytes=settings.max_request_bytes,
            api_key=api_key,
            catch_errors=True,
            web_ui=settings.web_ui,
        ),
    )
    return app
