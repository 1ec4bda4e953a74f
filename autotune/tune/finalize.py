"""What a study leaves in its folder: best.yaml, trials.csv, confirmation.json, and the parent MLflow run's copies of
them (`finalize`, safe on a partial study); `write_best_from_storage` for a study of several hosts.

Figures (history, importances, Pareto front, latency CDFs) are drawn by `autotune report` (`autotune.report`), on
demand: drawing them at the end of every `autotune tune` cost 6.4 s of CPU (matplotlib, and scikit-learn for fANOVA)
per run and per worker, for copies of the report's own figures."""

from __future__ import annotations

from pathlib import Path

from autotune.errors import ConfigError
from autotune.tune import attrs
from autotune.tune.best import build_best_config
from autotune.tune.confirm import confirmation
from autotune.redact import redact_url
from autotune.tune.report import write_trials_csv
from autotune.tune.session import StudySession, reopen_study
from autotune.tune.settings import TuneOutcome


def finalize(session: StudySession, *, recovered: list[int] | None = None, ran: int = 0, interrupted: bool = False) -> TuneOutcome:
    """best.yaml, trials.csv; the parent MLflow run gets them. Safe to call on a partial study."""
    study, space = session.study, session.space
    tuned = build_best_config(study, space, session.engine)
    best_path = tuned.write(session.study_dir / "best.yaml") if tuned is not None else None
    csv_path = write_trials_csv(study, session.study_dir / "trials.csv")
    confirmed = confirmation(study, space)
    if confirmed is not None:
        (session.study_dir / "confirmation.json").write_text(confirmed.model_dump_json(indent=2))
    if session.tracker is not None:
        files = [csv_path] + ([best_path] if best_path is not None else [])
        metrics = {}
        if tuned is not None:
            metrics = {k: float(v) for k, v in tuned.provenance.metrics.items() if v is not None}
        tags = {"best_trial": str(tuned.provenance.trial_number) if tuned is not None else "none"}
        if confirmed is not None:
            metrics["confirm_ratio_of_means"] = confirmed.ratio_of_means
            tags["confirm_verdict"] = confirmed.verdict[:500]
        session.tracker.log_study_results(files=files, metrics=metrics, tags=tags)
        session.tracker.finish_study("KILLED" if interrupted else "FINISHED")
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return TuneOutcome(
        study=session.name,
        study_dir=session.study_dir,
        storage=redact_url(session.storage_url),
        engine=session.engine,
        best_path=best_path,
        best_trial=tuned.provenance.trial_number if tuned is not None else None,
        trials_csv=csv_path,
        counts=counts,
        recovered=recovered or [],
        ran=ran,
        confirmation=confirmed,
    )


def write_best_from_storage(name: str, *, experiments_dir: Path, storage: str) -> Path:
    """`autotune best STUDY --storage URL`: the winner chosen from the shared storage, written to
    `<experiments>/<study>/best.yaml` on this host (workers on other hosts, pods or array tasks wrote their own).

    The winning trial's result file (hardware, versions) stays on the worker that measured it; when it is not
    readable here, the provenance says so instead of recording this host's hardware (MLflow's trial run has it).
    """
    session = reopen_study(name, experiments_dir=experiments_dir, storage=storage, mlflow=False)
    tuned = build_best_config(session.study, session.space, session.engine)
    if tuned is None:
        raise ConfigError(f"study {name!r}: no feasible trial completed in {redact_url(storage)}")
    best = next(t for t in session.study.get_trials(deepcopy=False) if t.number == tuned.provenance.trial_number)
    result_path = best.user_attrs.get(attrs.RESULT_PATH)
    if not (result_path and Path(result_path).is_file()):
        tuned.provenance.hardware = {}
        tuned.provenance.versions = {}
        tuned.provenance.notes = (
            f"{tuned.provenance.notes}; hardware and versions: trial {best.number}'s result file is on the worker that "
            "measured it (its MLflow run has them)"
        )
    session.study_dir.mkdir(parents=True, exist_ok=True)
    return tuned.write(session.study_dir / "best.yaml")
