"""What screening with the simulated engine would have saved on a finished GPU study (retrospective).

The study's measured trials are re-ordered by the objective the simulator predicts for their configs
(`autotune.tune.screen.screening_savings`): how many GPU trials, as run and best-predicted first, until one lies
within WITHIN% of the best, and the rank correlation of predicted and measured. Simulated figures are predictions,
not measurements. Copies the study's optuna.db (or unpacks its recorded optuna.db.xz) to a scratch folder first
(read only here).

    .venv/bin/python scripts/screening_savings.py STUDY_DIR PROFILE.json [PROFILE2.json ...] [--within 5] [--output F.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from autotune.report import recorded  # noqa: E402
from autotune.tune.screen import screening_savings  # noqa: E402
from autotune.tune.session import reopen_study  # noqa: E402
from serving.engines.profile import SimulatorProfile  # noqa: E402


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study_dir", type=Path)
    parser.add_argument("profiles", type=Path, nargs="+")
    parser.add_argument("--within", type=float, default=5.0)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / args.study_dir.name
        copy.mkdir()
        (copy / "optuna.db").write_bytes(recorded.read_bytes(args.study_dir / "optuna.db"))
        session = reopen_study(args.study_dir.name, experiments_dir=Path(scratch), mlflow=False)
        results = []
        for path in args.profiles:
            savings = screening_savings(session.study, session.space, SimulatorProfile.load(path), within_pct=args.within)
            results.append({"profile_file": str(path), **savings.model_dump(mode="json")})
            print(f"{path}: {savings.measured_trials} measured trials; within {args.within:g}% of the best "
                  f"(trial {savings.best_trial}, {savings.best_value:.2f}) after {savings.trials_to_reach_measured_order} "
                  f"as run, {savings.trials_to_reach_predicted_order} best-predicted first "
                  f"({savings.trials_avoided:+d} avoided); rank correlation {savings.rank_correlation}")
    if args.output:
        args.output.write_text(json.dumps({"kind": "screening-savings", "simulated_predictions": True,
                                           "study": str(args.study_dir), "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
