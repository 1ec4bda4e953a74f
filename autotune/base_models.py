"""The pydantic base models every boundary of the package builds on (the ground floor: they import nothing of ours).

Each says what it refuses: unknown keys always; then invalid assignments, any assignment, or coerced values.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Unknown keys fail, and so do invalid assignments (configs edited in place stay valid)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ClosedModel(BaseModel):
    """Unknown keys fail; assignments are not validated (records and schemas filled in step by step)."""

    model_config = ConfigDict(extra="forbid")


class FrozenModel(BaseModel):
    """Unknown keys fail; instances are immutable (and hashable): profiles, distributions, calibration points."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class StrictTypesModel(BaseModel):
    """Unknown keys fail and values are never coerced (pydantic strict mode: "1" is not an int): request bodies."""

    model_config = ConfigDict(extra="forbid", strict=True)
