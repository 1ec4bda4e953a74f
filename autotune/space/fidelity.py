"""The search space's `fidelity:` section: the screening load and the pruner (autotune.tune.fidelity runs it)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError

from autotune.bench.schemas import LoadSpec
from autotune.base_models import ClosedModel
from autotune.errors import format_validation_error


class PrunerSettings(ClosedModel):
    kind: Literal["best_fraction", "percentile"] = "best_fraction"
    fraction: Annotated[float, Field(gt=0, le=1)] = Field(
        default=0.8, description="best_fraction: kept when the screening value is >= fraction x the best one measured in full"
    )
    percentile: Annotated[float, Field(gt=0, lt=100)] = Field(
        default=50.0, description="percentile: kept when within the best `percentile` % of the screened values measured in full"
    )
    min_trials: Annotated[int, Field(ge=1)] = Field(
        default=2, description="Trials measured in full (with a screening value) before any trial is pruned"
    )


class FidelitySettings(ClosedModel):
    """The search space's `fidelity:` section: how a trial screens, and when screening stops it."""

    screening_load: dict[str, Any] = Field(
        description="Fields of `load` replaced for the screening measurement (e.g. duration_s, slo_rate_fractions)"
    )
    pruner: PrunerSettings = Field(default_factory=PrunerSettings)
    full_from_screening: bool = Field(
        default=True,
        description="slo_rate: a trial measured in full starts its bisection from the screening's bracket (the highest "
        "rate the screening met, the lowest it missed) instead of its own capacity probe and descent; the same windows "
        "judge each rate, and an end that proves wrong moves out (autotune.bench.rate_search)",
    )


def screening_load(load: LoadSpec, fidelity: FidelitySettings) -> LoadSpec:
    """The screening measurement's load: `load` with the section's fields replaced, validated (ValueError)."""
    data = {**load.model_dump(exclude_unset=True), **fidelity.screening_load}
    try:
        return LoadSpec.model_validate(data)
    except ValidationError as exc:
        raise ValueError(format_validation_error(exc).replace("\n", "; ")) from None


def fidelity_issues(fidelity: FidelitySettings, load: LoadSpec, directions: list[str]) -> list[str]:
    """What is wrong with a space's `fidelity` section, each naming its field."""
    issues: list[str] = []
    if len(directions) != 1:
        issues.append(f"fidelity: pruning after screening needs a single objective (this space has {len(directions)})")
    if not fidelity.screening_load:
        issues.append("fidelity.screening_load: give the load fields the screening measurement changes (e.g. duration_s)")
    unknown = sorted(set(fidelity.screening_load) - set(LoadSpec.model_fields))
    if unknown:
        issues.append(f"fidelity.screening_load: unknown load field(s) {', '.join(unknown)}; allowed: "
                      + ", ".join(LoadSpec.model_fields))
        return issues
    mode = fidelity.screening_load.get("mode", load.mode)
    if mode != load.mode:
        issues.append(f"fidelity.screening_load.mode: {mode!r} differs from load.mode {load.mode!r} (the screening value "
                      "must be the objective's metric, measured the same way for a shorter time)")
    try:
        screening_load(load, fidelity)
    except ValueError as exc:
        issues.append(f"fidelity.screening_load: {exc}")
    return issues
