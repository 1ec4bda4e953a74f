"""Dotted engine-field paths: `max_num_seqs`, `env.VLLM_X`, `mm_processor_kwargs.use_fast` (into dict fields)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autotune.config import EngineConfig

NOT_TUNABLE = frozenset({"model", "served_model_name"})
DICT_FIELDS = frozenset(
    name for name, info in EngineConfig.model_fields.items() if "dict[" in str(info.annotation)
)


def get_path(settings: Mapping[str, Any], path: str) -> Any:
    value: Any = settings
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def set_path(settings: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted field; inside a dict field, None removes the key (an unset env var, vLLM's default)."""
    parts = path.split(".")
    if len(parts) == 1:
        settings[path] = value
        return
    node = settings
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    if value is None:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value


def path_problem(path: str) -> str | None:
    parts = path.split(".")
    top = parts[0]
    tunable = sorted(set(EngineConfig.model_fields) - NOT_TUNABLE)
    if top not in EngineConfig.model_fields or top in NOT_TUNABLE:
        return f"unknown engine field {top!r}; allowed: {', '.join(tunable)}"
    if len(parts) > 1 and top not in DICT_FIELDS:
        return f"{top!r} is not a mapping; dotted names reach only into {', '.join(sorted(DICT_FIELDS))}"
    if any(not part for part in parts):
        return f"empty name segment in {path!r}"
    return None
