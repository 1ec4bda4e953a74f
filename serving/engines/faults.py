"""Fault injection for tests of the tuner (simulated engine only).

`AUTOTUNE_SIMULATED_FAULT` (an env var; a tuned config can carry it in `engine_config.env`):
  crash_at_start            the process exits non-zero before /health is ready
  hang_at_start             the server listens but never becomes ready (/health stays 503)
  crash_after_requests:N    the process exits (code 3) right after the N-th request finishes
  stall_after_requests:N    after N requests were admitted, nothing more is generated or answered
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict

from autotune.errors import ConfigError

FAULT_ENV = "AUTOTUNE_SIMULATED_FAULT"
FAULT_EXIT_CODE = 3
_KINDS_WITH_COUNT = ("crash_after_requests", "stall_after_requests")
_KINDS = ("none", "crash_at_start", "hang_at_start", *_KINDS_WITH_COUNT)

FaultKind = Literal["none", "crash_at_start", "hang_at_start", "crash_after_requests", "stall_after_requests"]


class FaultPlan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: FaultKind = "none"
    after_requests: int | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> FaultPlan:
        return parse_fault(env.get(FAULT_ENV))


def parse_fault(value: str | None) -> FaultPlan:
    if not value:
        return FaultPlan()
    name, _, count = value.strip().partition(":")
    if name not in _KINDS:
        raise ConfigError(f"{FAULT_ENV}: unknown fault {name!r}; allowed: {', '.join(_KINDS)}")
    if name in _KINDS_WITH_COUNT:
        if not count.isdigit():
            raise ConfigError(f"{FAULT_ENV}: {name} needs a request count, e.g. {name}:5 (got {value!r})")
        return FaultPlan(kind=name, after_requests=int(count))  # type: ignore[arg-type]
    if count:
        raise ConfigError(f"{FAULT_ENV}: {name} takes no count (got {value!r})")
    return FaultPlan(kind=name)  # type: ignore[arg-type]
