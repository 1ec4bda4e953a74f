"""Parameter values -> EngineConfig: the one translation (engine_base, then fixed, then the active parameters)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from autotune.config import EngineConfig
from autotune.errors import AutotuneError, format_validation_error
from autotune.space.paths import get_path, set_path
from autotune.space.schema import ParamSpec

if TYPE_CHECKING:
    from autotune.space.search_space import SearchSpace


class InvalidTrialConfig(AutotuneError):
    """Parameter values that do not make a valid EngineConfig (the trial is pruned with this reason)."""


def engine_config_from_params(space: SearchSpace, params: Mapping[str, Any], *, tuned: bool = True) -> EngineConfig:
    """The one translation of parameter values into an EngineConfig (validated).

    `tuned=False` gives the defaults config (no parameter applied). Raises InvalidTrialConfig.
    """

    def pick(name: str, spec: ParamSpec) -> Any:
        if name not in params:
            raise InvalidTrialConfig(f"parameter {name} is active (its conditions hold) but has no value")
        return params[name]

    settings = resolve_settings(space, pick if tuned else None)
    try:
        return EngineConfig.model_validate(settings)
    except ValidationError as exc:
        raise InvalidTrialConfig("invalid combination: " + format_validation_error(exc).replace("\n", "; ")) from None


def resolve_settings(space: SearchSpace, pick: Callable[[str, ParamSpec], Any] | None) -> dict[str, Any]:
    settings = space.engine_base.model_dump(mode="python")
    for path, value in space.fixed.items():
        set_path(settings, path, value)
    if pick is not None:
        for name, spec in space.parameters.items():
            if _conditions_hold(space, spec, settings):
                set_path(settings, spec.target(name), pick(name, spec))
            elif "otherwise" in spec.model_fields_set:
                set_path(settings, spec.target(name), spec.otherwise)
    variant = space.model_variants.get(str(settings.get("quantization")))
    if variant is not None:
        settings["model"] = variant.model
        if variant.tokenizer is not None:
            settings.setdefault("extra_engine_args", {})["tokenizer"] = variant.tokenizer
    return settings


def _conditions_hold(space: SearchSpace, spec: ParamSpec, settings: Mapping[str, Any]) -> bool:
    for subject, condition in spec.when.items():
        other = space.parameters.get(subject)
        path = other.target(subject) if other is not None else subject
        if not condition.holds(get_path(settings, path)):
            return False
    return True
