"""Reading a search space: a YAML file or mapping -> SearchSpace, paths resolved, secrets set apart.

Paths resolve next to the YAML (a hub id stays as written); `--model` replaces `engine_base.model`. Every error is a
ConfigError naming its field.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from autotune.config import read_yaml_mapping
from autotune.errors import ConfigError, format_validation_error
from autotune.space.search_space import SearchSpace
from autotune.space.secret_env import hide_secrets


def _resolve_path(value: str, base_dir: Path) -> str:
    """A relative path that exists next to the YAML (or starts with ./ ../) is made absolute; hub ids stay."""
    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path)
    candidate = base_dir / path
    if candidate.exists() or value.startswith(("./", "../")):
        return str(candidate.resolve())
    return value


def _resolve_paths(
    data: dict[str, Any], base_dir: Path, model: str | None, given: dict[str, str] | None = None
) -> dict[str, Any]:
    """Paths made usable from here; `given` gets {dotted location: the path as written} for the hash."""
    given = {} if given is None else given
    data = dict(data)
    base = data.get("engine_base")
    old_model: str | None = None
    if isinstance(base, dict) and isinstance(base.get("model"), str):
        base = dict(base)
        old_model = _resolve_path(base["model"], base_dir)
        given["engine_base.model"] = model or base["model"]
        base["model"] = _resolve_path(model, Path.cwd()) if model else old_model
        data["engine_base"] = base
    variants = data.get("model_variants")
    if isinstance(variants, dict):
        resolved: dict[str, Any] = {}
        for key, variant in variants.items():
            entry = {"model": variant} if isinstance(variant, str) else variant
            if isinstance(entry, dict):
                entry = dict(entry)
                for field in ("model", "tokenizer"):
                    if isinstance(entry.get(field), str):
                        given[f"model_variants.{key}.{field}"] = entry[field]
                        entry[field] = _resolve_path(entry[field], base_dir)
                if model and old_model and entry.get("tokenizer") == old_model:
                    entry["tokenizer"] = base["model"]  # the same model staged elsewhere (--model)
                    given[f"model_variants.{key}.tokenizer"] = model
            resolved[key] = entry
        data["model_variants"] = resolved
    workload = data.get("workload")
    if isinstance(workload, str) and workload.endswith((".yaml", ".yml", ".json", ".jsonl")):
        given["workload"] = workload
        data["workload"] = str((base_dir / Path(workload).expanduser()).resolve())  # a file, next to the YAML
    return data


def parse_search_space(
    data: Mapping[str, Any], *, source: str | Path | None = None, base_dir: Path | None = None, model: str | None = None
) -> SearchSpace:
    """Validate a mapping into a SearchSpace; paths resolve against `base_dir`; every error is a ConfigError.

    Literal secret env values become `${KEY}` placeholders (their values: `space.secret_env`).
    """
    given: dict[str, str] = {}
    resolved = _resolve_paths(dict(data), base_dir or Path.cwd(), model, given)
    secrets = hide_secrets(resolved)
    try:
        space = SearchSpace.model_validate(resolved)
    except ValidationError as exc:
        raise ConfigError(_render_errors(exc, source)) from None
    space._given_paths = given
    space._secret_env = secrets
    return space


def load_search_space(path: str | Path, *, model: str | None = None) -> SearchSpace:
    """Read a search-space YAML; `model` replaces engine_base.model (relative to the current folder)."""
    source = Path(path)
    return parse_search_space(read_yaml_mapping(source), source=source, base_dir=source.resolve().parent, model=model)


def _render_errors(exc: ValidationError, source: str | Path | None) -> str:
    """Pydantic's lines for structural errors; the semantic checks' own lines (they name their field)."""
    errors = exc.errors(include_url=False)
    if not all(not item.get("loc") and item.get("type") == "value_error" for item in errors):
        return format_validation_error(exc, source)
    prefix = f"{source}: " if source else ""
    lines: list[str] = []
    for item in errors:
        lines += [prefix + line for line in str(item.get("msg", "")).removeprefix("Value error, ").splitlines()]
    return "\n".join(lines)
