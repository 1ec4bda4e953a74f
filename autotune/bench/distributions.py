"""Integer distributions for workload lengths and counts: fixed, uniform or normal (clipped).

A plain integer in YAML means a fixed value: `output_tokens: 128`.
Sampling takes a caller's `numpy.random.Generator`, so a seed fixes every draw.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, Field, model_validator

from autotune.base_models import FrozenModel


class FixedInt(FrozenModel):
    kind: Literal["fixed"] = "fixed"
    value: Annotated[int, Field(ge=0)]

    def sample(self, rng: np.random.Generator) -> int:
        return self.value

    @property
    def mean(self) -> float:
        return float(self.value)


class UniformInt(FrozenModel):
    """Uniform over the integers min..max, both included."""

    kind: Literal["uniform"]
    min: Annotated[int, Field(ge=0)]
    max: Annotated[int, Field(ge=0)]

    @model_validator(mode="after")
    def _ordered(self) -> UniformInt:
        if self.min > self.max:
            raise ValueError(f"min must be <= max (got min={self.min}, max={self.max})")
        return self

    def sample(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.min, self.max + 1))

    @property
    def mean(self) -> float:
        return (self.min + self.max) / 2


class NormalInt(FrozenModel):
    """Normal(mean, std), rounded and clipped to [min, max]."""

    kind: Literal["normal"]
    mean: Annotated[float, Field(ge=0)]
    std: Annotated[float, Field(ge=0)]
    min: Annotated[int, Field(ge=0)] = 1
    max: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> NormalInt:
        if self.max is not None and self.min > self.max:
            raise ValueError(f"min must be <= max (got min={self.min}, max={self.max})")
        return self

    def sample(self, rng: np.random.Generator) -> int:
        value = round(float(rng.normal(self.mean, self.std)))
        value = max(value, self.min)
        return value if self.max is None else min(value, self.max)


def _plain_int_is_fixed(value: Any) -> Any:
    if isinstance(value, bool):
        return value  # let validation reject it with a clear message
    if isinstance(value, int):
        return {"kind": "fixed", "value": value}
    if not isinstance(value, (dict, BaseModel)):
        raise ValueError("expected an integer or a mapping with kind: 'fixed', 'uniform' or 'normal'")
    return value


IntDistribution = Annotated[
    FixedInt | UniformInt | NormalInt,
    Field(discriminator="kind"),
    BeforeValidator(_plain_int_is_fixed),
]
"""An int (fixed) or {kind: fixed|uniform|normal, ...}."""
