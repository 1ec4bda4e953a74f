"""Hardware and versions for provenance and MLflow tags: what a benchmark result recorded, else this host."""

from __future__ import annotations

import gzip
import json
from importlib import metadata
from pathlib import Path
from typing import Any

from autotune.bench.environment import hardware, versions
from autotune.observe.gpu import make_gpu_sampler

_TUNER_PACKAGES = ("optuna", "mlflow")


def _result_section(result_path: str | Path | None, key: str) -> dict[str, Any] | None:
    if not result_path:
        return None
    path = Path(result_path)
    try:
        raw = path.read_bytes()
        data = json.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw)  # results are saved as result.json.gz
    except (OSError, EOFError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    section = data.get(key)
    return section if isinstance(section, dict) else None


def hardware_info(result_path: str | Path | None = None) -> dict[str, Any]:
    """The hardware a result was measured on (from its result.json), else this host's."""
    recorded = _result_section(result_path, "hardware")
    if recorded is not None:
        return recorded
    sampler = make_gpu_sampler(True)
    try:
        gpus = sampler.devices()
    finally:
        sampler.stop()
    return hardware(gpus)


def version_info(result_path: str | Path | None = None) -> dict[str, str]:
    found = dict(_result_section(result_path, "versions") or versions())
    for package in _TUNER_PACKAGES:
        try:
            found.setdefault(package, metadata.version(package))
        except metadata.PackageNotFoundError:
            continue
    return {key: str(value) for key, value in found.items()}
