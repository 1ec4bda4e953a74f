"""The vLLM backend: run vLLM's own OpenAI server in-process with our middleware.

We do not re-implement vLLM's server. `autotune serve` with engine vllm writes the TunedConfig to a
private temp file (for GET /autotune/config and the middleware's limits), exports the config's
`env`, and calls `vllm.entrypoints.cli.main.main()` with `build_vllm_argv(...)`. vLLM spawns extra
API servers itself (api_server_count > 1); each imports `serving.vllm_middleware` by path.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import math
import os
import socket
import sys
import tempfile
from collections.abc import Mapping

from autotune import GPU_INSTALL_HINT
from autotune.config import EngineConfig, EngineKind, ServingSettings, TunedConfig
from autotune.errors import EngineUnavailableError
from autotune.model_files import usable_model_dir
from autotune.redact import expand_env
from serving.engines.colocation import colocation_env, kv_cache_bytes_per_engine, place_engines_on_shared_gpus
from serving.announce import announce_listening
from serving.start_env import engine_start_env
from serving.state import config_document
from serving.vllm_middleware import API_KEY_ENV, CONFIG_ENV

log = logging.getLogger("autotune.serve")

MIDDLEWARE_PATH = "serving.vllm_middleware.AutotuneMiddleware"


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def require_vllm() -> None:
    if not vllm_available():
        raise EngineUnavailableError(
            f"vLLM is not installed here: on a GPU host, {GPU_INSTALL_HINT}; "
            "or serve the CPU stand-in with --engine simulated"
        )


def build_vllm_argv(tuned: TunedConfig, settings: ServingSettings, kv_cache_memory_bytes: int | None = None) -> list[str]:
    """`vllm serve` arguments for this config; the only place serving settings become vLLM flags.
    `kv_cache_memory_bytes`: each engine's KV cache when several share a GPU (`kv_cache_bytes_per_engine`)."""
    engine = _with_readable_files(tuned.engine_config)
    argv = [
        "vllm",
        "serve",
        engine.model,
        *engine.to_vllm_cli_args(kv_cache_memory_bytes),
        *serving_flags(settings),
        "--middleware",
        MIDDLEWARE_PATH,
    ]
    # The API key reaches vLLM through VLLM_API_KEY (vllm_environment), never the command line,
    # where any local user could read it from the process list.
    return argv


def serving_flags(settings: ServingSettings) -> list[str]:
    """The serving settings vLLM's own server takes as flags (the others are our middleware's)."""
    flags = ["--host", settings.host, "--port", str(settings.port)]
    if settings.allowed_image_hosts:
        flags += ["--allowed-media-domains", *settings.allowed_image_hosts]
    return flags


def vllm_serving_environment(settings: ServingSettings) -> dict[str, str]:
    """The environment autotune serves vLLM with, before the config's own `env` (which wins)."""
    return {
        **engine_start_env(EngineKind.VLLM),  # read when a process starts: set before `vllm serve` in an export
        "VLLM_USE_FLASHINFER_SAMPLER": "0",
        # Our middleware checks image URLs once; vLLM must not follow redirects to somewhere unchecked.
        "VLLM_MEDIA_URL_ALLOW_REDIRECTS": "0",
        "VLLM_IMAGE_FETCH_TIMEOUT": str(max(1, math.ceil(settings.image_fetch_timeout_s))),
        "VLLM_HTTP_TIMEOUT_KEEP_ALIVE": str(settings.http_keep_alive_s),  # read by each API server's uvicorn
    }


def _with_readable_files(engine: EngineConfig) -> EngineConfig:
    """The model (and a tokenizer folder) where vLLM can read every file: packed ones unpacked in the cache
    (`autotune.model_files`); the name clients use stays the config's."""
    extra = dict(engine.extra_engine_args)
    if isinstance(extra.get("tokenizer"), str):
        extra["tokenizer"] = usable_model_dir(extra["tokenizer"])
    return engine.model_copy(update={
        "model": usable_model_dir(engine.model), "served_model_name": engine.name_for_clients, "extra_engine_args": extra,
    })


def vllm_environment(tuned: TunedConfig, config_json_path: str) -> dict[str, str]:
    """Environment for vLLM: the config's `env` wins over our defaults."""
    settings = tuned.serving
    configured = expand_env(tuned.engine_config.env, os.environ)  # `${VAR}` placeholders: from our environment
    env = {
        **vllm_serving_environment(settings),
        **configured,
        **colocation_env(tuned.engine_config),  # engines_per_gpu > 1: read by each engine-core process
        CONFIG_ENV: config_json_path,
    }
    if settings.api_key is not None:
        env[API_KEY_ENV] = settings.api_key.get_secret_value()
        env["VLLM_API_KEY"] = settings.api_key.get_secret_value()
    return env


def write_config_json(tuned: TunedConfig) -> str:
    """The config as served at /autotune/config (API key masked), in a file only we can read."""
    document = config_document(tuned, {"engine": EngineKind.VLLM.value, "simulated": False})
    descriptor, path = tempfile.mkstemp(prefix="autotune-config-", suffix=".json")
    with os.fdopen(descriptor, "w") as handle:
        json.dump(document, handle)
    return path


def free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class VllmBackend:
    def run(self, tuned: TunedConfig) -> None:
        require_vllm()
        settings = tuned.serving
        if settings.port == 0:
            settings = settings.model_copy(update={"port": free_port(settings.host)})
            tuned = tuned.model_copy(update={"serving": settings})
        kv_cache_memory_bytes = kv_cache_bytes_per_engine(tuned.engine_config)  # engines_per_gpu > 1 only
        config_path = write_config_json(tuned)
        try:
            _export(vllm_environment(tuned, config_path))
            sys.argv = build_vllm_argv(tuned, settings, kv_cache_memory_bytes)
            announce_listening(settings.host, settings.port)
            log.info("starting vLLM: vllm serve %s (api key hidden)", tuned.engine_config.model)
            from vllm.entrypoints.cli.main import main as vllm_main

            if place_engines_on_shared_gpus(tuned.engine_config):
                log.info("%d engine cores per GPU", tuned.engine_config.engines_per_gpu)
            vllm_main()
        finally:
            with contextlib.suppress(OSError):
                os.unlink(config_path)


def _export(env: Mapping[str, str]) -> None:
    for name, value in env.items():
        os.environ[name] = value
