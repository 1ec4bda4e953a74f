"""The parts of a search space: tuned parameters (distribution, target field, conditions), model variants,
budget, sampler and trial settings."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import ConfigDict, Field, model_validator

from autotune.base_models import ClosedModel

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution

ChoiceValue = bool | int | float | str | None
ParamType = Literal["int", "float", "categorical", "bool"]


class Condition(ClosedModel):
    """A test on one earlier parameter (or engine field). YAML shorthand: a scalar means `eq`, a list `in`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    eq: ChoiceValue = None
    ne: ChoiceValue = None
    in_: list[ChoiceValue] | None = Field(default=None, alias="in")
    not_in: list[ChoiceValue] | None = None
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, list):
            return {"in": data}
        if not isinstance(data, dict):
            return {"eq": data}
        return data

    @model_validator(mode="after")
    def _needs_an_operator(self) -> Condition:
        if not self.model_fields_set:
            raise ValueError("a condition needs one of: eq, ne, in, not_in, gt, ge, lt, le")
        return self

    def holds(self, value: Any) -> bool:
        checks: dict[str, Callable[[], bool]] = {
            "eq": lambda: _same(value, self.eq),
            "ne": lambda: not _same(value, self.ne),
            "in_": lambda: any(_same(value, item) for item in self.in_ or []),
            "not_in": lambda: not any(_same(value, item) for item in self.not_in or []),
            "gt": lambda: _is_number(value) and value > self.gt,  # type: ignore[operator]
            "ge": lambda: _is_number(value) and value >= self.ge,  # type: ignore[operator]
            "lt": lambda: _is_number(value) and value < self.lt,  # type: ignore[operator]
            "le": lambda: _is_number(value) and value <= self.le,  # type: ignore[operator]
        }
        return all(checks[name]() for name in self.model_fields_set)


def _same(a: Any, b: Any) -> bool:
    # True == 1 in Python; a condition on a bool must not match the integer 1.
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class ParamSpec(ClosedModel):
    """One tuned parameter: an Optuna distribution, the engine field it sets, and when it is active."""

    type: ParamType
    field: str | None = Field(default=None, description="EngineConfig field (dotted) it sets; default: its name")
    low: int | float | None = None
    high: int | float | None = None
    step: int | float | None = None
    log: bool = False
    choices: list[ChoiceValue] | None = None
    when: dict[str, Condition] = Field(default_factory=dict, description="All must hold for it to be tuned")
    otherwise: ChoiceValue = Field(
        default=None, description="Value set when `when` does not hold; if absent the base value stays"
    )
    description: str | None = None

    @model_validator(mode="after")
    def _check_shape(self) -> ParamSpec:
        numeric = self.type in ("int", "float")
        if numeric:
            if self.low is None or self.high is None:
                raise ValueError(f"type {self.type} needs low and high")
            if self.choices is not None:
                raise ValueError(f"type {self.type} takes low/high, not choices")
            if self.low > self.high:
                raise ValueError(f"low ({self.low}) must be <= high ({self.high})")
            if self.log and self.low <= 0:
                raise ValueError(f"log scale needs low > 0 (got {self.low})")
            if self.step is not None and self.step <= 0:
                raise ValueError(f"step must be > 0 (got {self.step})")
        else:
            extra = [name for name in ("low", "high", "step") if getattr(self, name) is not None]
            if self.log:
                extra.append("log")
            if extra:
                raise ValueError(f"type {self.type} does not take {', '.join(extra)}")
        if self.type == "int":
            for name in ("low", "high", "step"):
                value = getattr(self, name)
                if value is not None and float(value) != int(value):
                    raise ValueError(f"type int needs a whole {name} (got {value})")
            if self.log and self.step not in (None, 1):
                raise ValueError("type int with log: true needs step 1")
        if self.type == "float" and self.log and self.step is not None:
            raise ValueError("type float takes either log: true or step, not both")
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("type categorical needs a non-empty choices list")
            if len({json.dumps(item) for item in self.choices}) != len(self.choices):
                raise ValueError(f"choices must be unique (got {self.choices})")
        if self.type == "bool" and self.choices is not None:
            raise ValueError("type bool takes no choices (it is true or false)")
        if "otherwise" in self.model_fields_set and not self.when:
            raise ValueError("otherwise is only meaningful with when")
        return self

    def target(self, name: str) -> str:
        return self.field or name

    def candidate_values(self) -> list[Any]:
        """The values worth validating against EngineConfig (ends of a range, every choice)."""
        if self.type == "bool":
            return [False, True]
        if self.type == "categorical":
            return list(self.choices or [])
        cast = int if self.type == "int" else float
        return [cast(self.low), cast(self.high)]

    def distribution(self) -> BaseDistribution:
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        assert self.low is not None or self.type in ("categorical", "bool")
        if self.type == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))  # type: ignore[arg-type]
        if self.type == "float":
            return FloatDistribution(float(self.low), float(self.high), log=self.log, step=self.step)  # type: ignore[arg-type]
        if self.type == "bool":
            return CategoricalDistribution([False, True])
        return CategoricalDistribution(list(self.choices or []))

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        if self.type == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)  # type: ignore[arg-type]
        if self.type == "float":
            return trial.suggest_float(name, float(self.low), float(self.high), step=self.step, log=self.log)  # type: ignore[arg-type]
        if self.type == "bool":
            return trial.suggest_categorical(name, [False, True])
        return trial.suggest_categorical(name, list(self.choices or []))


class ModelVariant(ClosedModel):
    """A checkpoint for a quantization choice: a folder whose config.json carries quantization_config."""

    model: str
    tokenizer: str | None = Field(default=None, description="Tokenizer folder when the variant holds none")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"model": data} if isinstance(data, str) else data


class Budget(ClosedModel):
    n_trials: Annotated[int, Field(ge=1)] = 20
    timeout_s: Annotated[float, Field(gt=0)] | None = None


class SamplerSettings(ClosedModel):
    """tpe (default), nsga2 (pareto), random, or grid: every combination of the (categorical/bool) parameters once."""

    kind: Literal["tpe", "nsga2", "random", "grid"] = "tpe"
    seed: int | None = 0
    n_startup_trials: Annotated[int, Field(ge=0)] = 5
    compile_key_runs: Annotated[int, Field(ge=1, le=20)] = Field(
        default=1,
        description="Consecutive sampled trials that keep the compile-key parameters of the one before (1: off); "
        "a trial whose compile key vLLM has compiled loads it from its cache instead (autotune.tune.compile_order)",
    )
    compile_key_params: list[str] | None = Field(
        default=None, description="The parameters that change vLLM's compile key; default: those whose engine field does"
    )


class TrialSettings(ClosedModel):
    startup_timeout_s: Annotated[float, Field(gt=0)] = 600.0
    warmup_requests: Annotated[int, Field(ge=0)] = 8
    measure_timeout_s: Annotated[float, Field(gt=0)] = Field(
        default=900.0, description="A benchmark still running after this is a failed trial (server stalled)"
    )
    stop_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    gpu_memory_gib: Annotated[float, Field(gt=0)] | None = Field(
        default=None, description="For the feasibility check; None: the GPU's total from NVML (skip without one)"
    )
    activation_reserve_gib: Annotated[float, Field(ge=0)] = 4.0
    gpu_release_timeout_s: Annotated[float, Field(ge=0)] = 60.0
    gpu_release_tolerance_mib: Annotated[float, Field(ge=0)] = 512.0
