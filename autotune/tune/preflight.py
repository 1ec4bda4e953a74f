"""Checks before the first trial: the study folder is writable, the disk has room, the engine can run,
every `${VAR}` of the engine env is set."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING

from autotune import GPU_INSTALL_HINT
from autotune.config import EngineKind
from autotune.errors import ConfigError, EngineUnavailableError
from autotune.tune.redact import missing_env_placeholders

if TYPE_CHECKING:
    from autotune.search_space import SearchSpace

MIN_FREE_GIB = 1.0


def check_study_dir(study_dir: Path, *, min_free_gib: float = MIN_FREE_GIB) -> None:
    """Create the folder and prove it writable; refuse when the disk is nearly full."""
    try:
        study_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=study_dir, prefix=".write-check-", delete=True) as handle:
            handle.write(b"ok")
            handle.flush()
    except OSError as exc:
        raise ConfigError(f"experiments folder {study_dir} is not writable: {exc.strerror or exc}") from None
    free_gib = shutil.disk_usage(study_dir).free / 1024**3
    if free_gib < min_free_gib:
        raise ConfigError(
            f"experiments folder {study_dir}: only {free_gib:.2f} GiB free on its disk "
            f"(need at least {min_free_gib:g} GiB for trial logs and results)"
        )


def check_engine(engine: EngineKind) -> None:
    if engine is EngineKind.VLLM and importlib.util.find_spec("vllm") is None:
        raise EngineUnavailableError(
            f"engine vllm: vLLM is not installed here (on a GPU host: {GPU_INSTALL_HINT}), "
            "or tune the simulated engine with --engine simulated"
        )


def min_free_gib() -> float:
    """Override with AUTOTUNE_MIN_FREE_GIB (tests, small disks)."""
    try:
        return float(os.environ.get("AUTOTUNE_MIN_FREE_GIB", MIN_FREE_GIB))
    except ValueError:
        raise ConfigError("AUTOTUNE_MIN_FREE_GIB: expected a number of GiB") from None


def prepare_engine_env(space: SearchSpace, environ: MutableMapping[str, str] | None = None) -> None:
    """Put the space's literal secrets into the tuner's environment (trial servers inherit it, files keep
    `${KEY}`), then require every `${VAR}` of the defaults config's env to be set."""
    target = os.environ if environ is None else environ
    target.update(space.secret_env)
    missing = missing_env_placeholders(space.defaults_config().env, target)
    if missing:
        raise ConfigError(
            "engine env: " + ", ".join(missing) + " not set in the environment of `autotune tune` "
            "(trial servers take `${VAR}` values from it)"
        )
