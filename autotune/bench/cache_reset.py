"""Reset a server's prefix, multimodal and encoder caches before a measured window (`LoadSpec.reset_caches`).

vLLM 0.24 offers `POST /reset_prefix_cache`, `POST /reset_mm_cache` and `POST /reset_encoder_cache`
(vllm/entrypoints/serve/dev/cache/api_router.py) only when the server runs with `VLLM_SERVER_DEV_MODE=1`
(vllm/entrypoints/openai/api_server.py registers the dev routers under that setting); our simulated server
mirrors that. Without the routes a run asking for resets fails before it sends anything
(`CacheResetUnsupportedError`), never measures with warm caches in silence.

vLLM does not say whether a reset succeeded (it answers 200 either way and only logs a refusal while
requests are running); the benchmark resets between windows, when its own requests have all finished.
"""

from __future__ import annotations

import httpx

from autotune.errors import AutotuneError

RESET_ROUTES = ("/reset_prefix_cache", "/reset_mm_cache", "/reset_encoder_cache")
DEV_MODE_ENV = "VLLM_SERVER_DEV_MODE"


class CacheResetUnsupportedError(AutotuneError):
    """The server has no cache-reset routes (or refuses them), so caches cannot be reset between windows."""


async def reset_server_caches(client: httpx.AsyncClient, base_url: str, headers: dict[str, str] | None = None) -> None:
    """POST every reset route; raises CacheResetUnsupportedError naming the first one that fails."""
    for route in RESET_ROUTES:
        url = f"{base_url}{route}"
        try:
            response = await client.post(url, headers=headers, timeout=30.0)
        except httpx.HTTPError as exc:
            raise CacheResetUnsupportedError(f"cache reset: POST {url} failed: {type(exc).__name__}: {exc}") from None
        if response.status_code in (404, 405):
            raise CacheResetUnsupportedError(
                f"reset_caches: the server has no POST {route} (HTTP {response.status_code}). vLLM registers its "
                f"cache-reset routes only when started with {DEV_MODE_ENV}=1 (in a search space: "
                f"engine_base.env: {{{DEV_MODE_ENV}: '1'}}); or turn reset_caches off and use a dataset large enough "
                "for the run."
            )
        if response.status_code != 200:
            raise CacheResetUnsupportedError(
                f"reset_caches: POST {url} answered HTTP {response.status_code}: {response.text[:200]}"
            )
