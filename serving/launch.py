"""`autotune serve`: load and validate the config once, say what is served, hand it to a backend."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from rich.console import Console
from rich.logging import RichHandler

from autotune.config import EngineConfig, EngineKind, TunedConfig, load_tuned_config
from autotune.errors import ConfigError, config_error_from
from autotune.hub import require_model_files
from autotune.redact import expand_env
from serving.backends import SimulatedBackend
from serving.engines.base import ServingBackend
from serving.engines.vllm_launcher import VllmBackend
from serving.start_env import engine_start_env, reexecute_if_needed
from serving.vllm_middleware import API_KEY_ENV

log = logging.getLogger("autotune.serve")

MASKED_KEY = "**********"  # what TunedConfig files hold instead of a real API key


class ServeOptions(BaseModel):
    """What the `autotune serve` command line says; None means "from the config file"."""

    model_config = ConfigDict(extra="forbid")

    config_path: Path | None = None
    model: str | None = None
    engine: EngineKind | None = None
    host: str | None = None
    port: int | None = None
    api_key: str | None = None
    profile: Path | None = None

    def to_argv(self) -> list[str]:
        """The `autotune serve` options that give these again, less the API key (AUTOTUNE_API_KEY carries it)."""
        engine = None if self.engine is None else self.engine.value
        pairs = (("--config", self.config_path), ("--model", self.model), ("--engine", engine), ("--host", self.host),
                 ("--port", self.port), ("--profile", self.profile))
        return [text for flag, value in pairs if value is not None for text in (flag, str(value))]


def resolve_tuned_config(options: ServeOptions) -> TunedConfig:
    """The config file (or `--model` with vLLM's defaults), with command-line overrides, validated once."""
    if (options.config_path is None) == (options.model is None):
        raise ConfigError("give exactly one of --config FILE or --model PATH")
    if options.config_path is not None:
        tuned = load_tuned_config(options.config_path)
        source: str | Path = options.config_path
    else:
        assert options.model is not None
        tuned = TunedConfig(engine_config=EngineConfig(model=options.model))
        source = "command line"
    data: dict[str, Any] = tuned.model_dump(mode="python")
    serving = data["serving"]
    if tuned.serving.api_key is not None:
        serving["api_key"] = tuned.serving.api_key.get_secret_value()
    for name in ("host", "port", "api_key"):
        value = getattr(options, name)
        if value is not None:
            serving[name] = value
    if serving.get("api_key") == MASKED_KEY:
        raise ConfigError(
            f"{source}: serving.api_key is masked ({MASKED_KEY}) in the file; "
            "give the key with --api-key or the AUTOTUNE_API_KEY environment variable"
        )
    if options.engine is not None:
        data["engine"] = options.engine
    if options.profile is not None:
        data["simulator_profile"] = str(options.profile)
    try:
        return TunedConfig.model_validate(data)
    except ValidationError as exc:
        raise config_error_from(exc, source) from None


def configure_logging(level: str) -> None:
    """Rich on a terminal; plain timestamped lines in a log file (what the tuner keeps per trial)."""
    handler: logging.Handler
    if sys.stderr.isatty():
        handler = RichHandler(console=Console(stderr=True), show_path=False, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def describe(tuned: TunedConfig) -> None:
    """Log what is served, where the config came from, and the engine (loudly when simulated)."""
    engine_config = tuned.engine_config
    provenance = tuned.provenance
    if tuned.engine == EngineKind.SIMULATED:
        log.warning("SIMULATED engine — not a GPU measurement (CPU stand-in; numbers are modeled)")
    log.info(
        "serving model %s as %r with engine %s", engine_config.model, engine_config.name_for_clients, tuned.engine.value
    )
    origin = (
        "vLLM defaults" if provenance.study is None else f"study {provenance.study!r}, trial {provenance.trial_number}"
    )
    log.info("config from %s, created %s", origin, provenance.created_at.isoformat(timespec="seconds"))
    tuned_fields = engine_config.tuned_fields()
    if tuned_fields:
        log.info("engine settings: %s", ", ".join(f"{k}={v}" for k, v in sorted(tuned_fields.items()) if k != "env"))


def backend_for(tuned: TunedConfig) -> ServingBackend:
    if tuned.engine == EngineKind.VLLM:
        return VllmBackend()
    return SimulatedBackend()


def serve_environment(tuned: TunedConfig) -> dict[str, str]:
    """What `autotune serve` adds to its environment: the engine's start-time defaults, then the config's `env`, whose
    `${VAR}` values (secrets) are expanded here only, from this process's environment (files keep the placeholders)."""
    return {**engine_start_env(tuned.engine), **expand_env(tuned.engine_config.env, os.environ)}


def serve(options: ServeOptions) -> None:
    tuned = resolve_tuned_config(options)
    configure_logging(tuned.serving.log_level)
    require_model_files([tuned.engine_config.model])  # a hub id: its configs cached or fetched now, or one clear error
    env = serve_environment(tuned)
    api_key = {API_KEY_ENV: options.api_key} if options.api_key is not None else {}
    reexecute_if_needed({**env, **api_key}, options.to_argv())  # LD_PRELOAD, MALLOC_*, ...: serving.start_env
    describe(tuned)
    os.environ.update(env)
    backend_for(tuned).run(tuned)
