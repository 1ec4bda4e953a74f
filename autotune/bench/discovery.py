"""What the server under test is: its model name, and its config when it is our `autotune serve`.

`simulated` is True when `/autotune/config` says `simulated: true` or a response carries the
header `x-autotune-engine: simulated`: results against the simulated engine are labeled so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from autotune.errors import AutotuneError

ENGINE_HEADER = "x-autotune-engine"


class ServerUnreachableError(AutotuneError):
    """The benchmark could not talk to the server at all (before any request was measured)."""


@dataclass(frozen=True, slots=True)
class ServerInfo:
    base_url: str
    model: str
    config: dict[str, Any] | None
    simulated: bool


def base_url(url: str) -> str:
    """`http://host:port`, from that or `http://host:port/v1` (trailing slashes ignored)."""
    url = url.rstrip("/")
    return url.removesuffix("/v1") if url.endswith("/v1") else url


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


async def discover_server(url: str, *, model: str | None, api_key: str | None, timeout_s: float = 10.0) -> ServerInfo:
    root = base_url(url)
    headers = auth_headers(api_key)
    simulated = False
    async with httpx.AsyncClient(timeout=timeout_s, headers=headers) as client:
        try:
            models = await client.get(f"{root}/v1/models")
        except httpx.HTTPError as exc:
            raise ServerUnreachableError(f"cannot reach {root}/v1/models: {type(exc).__name__}: {exc}") from None
        simulated |= models.headers.get(ENGINE_HEADER, "").lower() == "simulated"
        if model is None:
            model = _first_model(models, root)
        config: dict[str, Any] | None = None
        try:
            response = await client.get(f"{root}/autotune/config")
        except httpx.HTTPError:
            response = None
        if response is not None and response.status_code == 200:
            simulated |= response.headers.get(ENGINE_HEADER, "").lower() == "simulated"
            try:
                data = response.json()
            except ValueError:
                data = None
            if isinstance(data, dict):
                config = data
                simulated |= data.get("simulated") is True
    return ServerInfo(base_url=root, model=model, config=config, simulated=simulated)


def _first_model(response: httpx.Response, root: str) -> str:
    if response.status_code != 200:
        raise ServerUnreachableError(
            f"{root}/v1/models answered HTTP {response.status_code}; pass the model name (--model) or check --api-key"
        )
    try:
        entries = response.json().get("data") or []
        return str(entries[0]["id"])
    except (ValueError, AttributeError, LookupError, TypeError):
        raise ServerUnreachableError(f"{root}/v1/models lists no model; pass the model name (--model)") from None
