"""Identities: of an engine config (`config_hash`), and of a search space (what a study measures).

A study stores its space's hash and a resume must match it. Three rules have been used, all still accepted
(`SearchSpace.matches_hash`): the current one hashes only what differs from the schema's defaults, with paths as
written in the YAML (or given with --model); the one before hashed every field, defaults included; the first
hashed the paths as resolved (so it changed with the checkout's location).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from autotune.config import EngineConfig
from autotune.space.paths import set_path

UNHASHED = {"budget", "description", "sampler", "fidelity"}  # how trials are chosen and cut short, not what they measure


def config_hash(engine: EngineConfig) -> str:
    """Canonical identity of an engine config (same settings -> same hash)."""
    return digest(engine.model_dump(mode="json"))


def digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def located_hash(data: dict[str, Any], given_paths: Mapping[str, str]) -> str:
    """The digest of a space's dump with each path put back as written (`given_paths`: dotted location -> path)."""
    for location, given in given_paths.items():
        set_path(data, location, given)
    return digest(data)
