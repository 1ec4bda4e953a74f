"""What screening with the simulated engine would have saved on a finished GPU study (retrospective).

The study's measured trials are re-ordered by the objective the simulator predicts for their configs
(`autotune.tune.screen.screening_savings`): how many GPU trials, as run and best-predicted first, until one lies
within `within_pct`% of the best, and the rank correlation of predicted and measured. Simulated figures are
predictions, not measurements. The study's optuna.db (or its recorded optuna.db.xz) is copied to a scratch folder
first: the recorded study is only read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autotune.report import recorded
from autotune.tune.screen import ScreeningSavings, screening_savings
from serving.engines.profile import SimulatorProfile


def study_screening_savings(study_dir: Path, profiles: Sequence[Path], within_pct: float) -> list[tuple[Path, ScreeningSavings]]:
    """Each profile's savings on the study recorded in `study_dir`."""
    with recorded.study(study_dir) as session:
        return [(path, screening_savings(session.study, session.space, SimulatorProfile.load(path), within_pct=within_pct))
                for path in profiles]


def describe(path: Path, savings: ScreeningSavings, within_pct: float) -> str:
    """One line: the trials to reach the best's neighbourhood as run and best-predicted first."""
    return (f"{path}: {savings.measured_trials} measured trials; within {within_pct:g}% of the best "
            f"(trial {savings.best_trial}, {savings.best_value:.2f}) after {savings.trials_to_reach_measured_order} "
            f"as run, {savings.trials_to_reach_predicted_order} best-predicted first "
            f"({savings.trials_avoided:+d} avoided); rank correlation {savings.rank_correlation}")


def savings_record(study_dir: Path, found: list[tuple[Path, ScreeningSavings]]) -> dict[str, Any]:
    """The JSON a run folder keeps (screening-savings.json)."""
    results = [{"profile_file": str(path), **savings.model_dump(mode="json")} for path, savings in found]
    return {"kind": "screening-savings", "simulated_predictions": True, "study": str(study_dir), "results": results}
