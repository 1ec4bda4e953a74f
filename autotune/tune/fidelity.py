"""Multi-fidelity trials: a short screening measurement first, the full one only for configs that can still win.

With a `fidelity:` section in the search space, each served trial (after its warm-up) is first measured with the
screening load: the space's `load` with `fidelity.screening_load`'s fields replaced (e.g. shorter windows, fewer
rates). The objective's metric of that measurement is reported to Optuna (`trial.report(value, step=0)`) and the
space's pruner decides (`trial.should_prune()`): a pruned trial stops there, PRUNED with its screening value and the
reason; the others go on to the full measurement on the same server, whose value is the trial's. Pruners compare a
screening value with the screening values of the trials measured in full (Optuna's COMPLETE trials), the same
fidelity on both sides:

- `percentile` (Optuna's PercentilePruner): kept when within the best `percentile` percent of them (50: the median);
- `best_fraction` (default): kept when at least `fraction` x the best of them (maximized objectives; a minimized one
  is kept when at most the best / `fraction`), i.e. only configs that can still reach the best get measured in full.

Neither prunes before `min_trials` trials are measured in full. vLLM's defaults (trial 0) are screened too, so their
screening value is a reference, but never pruned; repeats (`--confirm`) are not screened. Pruning needs a single
objective (Optuna's pruners do not take several).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from autotune.bench.schemas import LoadSpec, Summary
from autotune.errors import format_validation_error

SCREENING_STEP = 0
"""The step a screening value is reported at (the full measurement is the trial's value, not a step)."""


class PrunerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

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


class FidelitySettings(BaseModel):
    """The search space's `fidelity:` section: how a trial screens, and when screening stops it."""

    model_config = ConfigDict(extra="forbid")

    screening_load: dict[str, Any] = Field(
        description="Fields of `load` replaced for the screening measurement (e.g. duration_s, slo_rate_fractions)"
    )
    pruner: PrunerSettings = Field(default_factory=PrunerSettings)


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


ScreeningGate = Callable[[Summary], "str | None"]
"""Called with the screening summary: the reason to stop the trial there, or None to measure it in full."""


@dataclass(frozen=True)
class Screening:
    """What a trial runner needs to screen: the load, and the gate that decides after it."""

    load: LoadSpec
    gate: ScreeningGate


def screening_record(metric: str, value: float | None, figures: Mapping[str, float | None]) -> dict[str, Any]:
    """The `screening` attribute of a screened trial: the objective's metric, its value, and a few figures."""
    kept = ("throughput_rps", "goodput_rps", "slo_rate_rps", "ttft_ms_p99", "tpot_ms_p99", "error_rate", "duration_s")
    return {
        "metric": metric,
        "value": value,
        "figures": {key: figures[key] for key in kept if figures.get(key) is not None},
    }
