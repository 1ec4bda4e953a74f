"""Multi-fidelity trials: a short screening measurement first, the full one only for configs that can still win.

With a `fidelity:` section in the search space (its schema and checks: `autotune.space.fidelity`), each served
trial (after its warm-up) is first measured with the screening load: the space's `load` with
`fidelity.screening_load`'s fields replaced (e.g. shorter windows, fewer rates). The objective's metric of that measurement is reported to Optuna (`trial.report(value, step=0)`) and the
space's pruner decides (`trial.should_prune()`): a pruned trial stops there, PRUNED with its screening value and the
reason; the others go on to the full measurement on the same server, whose value is the trial's. Pruners compare a
screening value with the screening values of the trials measured in full (Optuna's COMPLETE trials), the same
fidelity on both sides:

- `percentile` (Optuna's PercentilePruner): kept when within the best `percentile` percent of them (50: the median);
- `best_fraction` (default): kept when at least `fraction` x the best of them (maximized objectives; a minimized one
  is kept when at most the best / `fraction`), i.e. only configs that can still reach the best get measured in full.

With `full_from_screening` (default) and the slo_rate objective, the full measurement starts from the screening's
bracket (`full_measurement_bracket`) instead of its own capacity probe: on an H100 on 2026-12-07, vLLM's defaults
screened at 25.4 req/s met and 38.1 missed, then the full measurement's probe (57 req/s at 256 concurrent) sent it
through windows at 51.7, 46.2 and 40.8 req/s, all missed, 1-1.5 minutes each, before one came near the bracket. The
windows and their verdicts are the full measurement's own; only the first rates tried differ. A screening that met the
highest rate it tried (censored) brackets from that rate to CENSORED_BRACKET_REACH x it.

Neither prunes before `min_trials` trials are measured in full. vLLM's defaults (trial 0) are screened too, so their
screening value is a reference, but never pruned; repeats (`--confirm`) are not screened. Pruning needs a single
objective (Optuna's pruners do not take several).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from autotune.bench.schemas import LoadSpec, Summary

SCREENING_STEP = 0
"""The step a screening value is reported at (the full measurement is the trial's value, not a step)."""


ScreeningGate = Callable[[Summary], "str | None"]
"""Called with the screening summary: the reason to stop the trial there, or None to measure it in full."""


@dataclass(frozen=True)
class Screening:
    """What a trial runner needs to screen: the load, the gate that decides after it, and whether the full
    measurement starts from the screening's bracket."""

    load: LoadSpec
    gate: ScreeningGate
    full_from_screening: bool = False


CENSORED_BRACKET_REACH = 1.5
"""A screening that met its highest rate and tried nothing above it (censored) brackets the full measurement from that
rate to this multiple of it. On an H100 on 2026-12-07 such a trial (screening: 46.61 req/s met) had no bracket, and its
full measurement's own probe sent it through 72.48 and 63.42 req/s, both missed, before 57.38; from (46.61, 69.92) the
first window is at 58.3. A wrong end moves out as any bracket's does (`autotune.bench.rate_search`)."""


def full_measurement_bracket(screening: Summary) -> tuple[float, float] | None:
    """(the highest rate the screening met, the lowest it missed) for the full measurement to start its bisection
    from; when nothing above the met rate was tried (censored), up to CENSORED_BRACKET_REACH x it; None when the
    screening met nothing."""
    low, high = screening.slo_rate_rps, screening.slo_rate_failed_rps
    if not low or low <= 0:
        return None
    if screening.slo_rate_censored or high is None:
        return (low, low * CENSORED_BRACKET_REACH)
    return (low, high) if low < high else None


def screening_record(metric: str, value: float | None, figures: Mapping[str, float | None]) -> dict[str, Any]:
    """The `screening` attribute of a screened trial: the objective's metric, its value, and a few figures."""
    kept = ("throughput_rps", "goodput_rps", "slo_rate_rps", "ttft_ms_p99", "tpot_ms_p99", "error_rate", "duration_s")
    return {
        "metric": metric,
        "value": value,
        "figures": {key: figures[key] for key in kept if figures.get(key) is not None},
    }
