"""What a report shows, gathered from the study (Optuna attributes) and the trials' result.json files."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState
from pydantic import Field, ValidationError

from autotune.bench.metrics import measured, tpot_ms
from autotune.bench.schemas import RequestRecord
from autotune.base_models import ClosedModel
from autotune.config import EngineKind
from autotune.observe.names import (
    STACK_API_SERVER_EVENT_LOOP_BUSY,
    STACK_API_SERVER_PREPROCESSING_BUSY,
    stack_engine_core_share,
)
from autotune.observe.stacks.activity import ACTIVITIES, stack_metrics
from autotune.tune import attrs
from autotune.tune.best import baseline_trial, select_best
from autotune.tune.confirm import Confirmation, confirmation
from autotune.tune.report import COMPARED_METRICS, LOWER_BOUND_FLAGS, gpm_unavailable
from autotune.tune.session import StudySession

log = logging.getLogger(__name__)


class TrialRun(ClosedModel):
    """One measured trial as the report needs it: figures plus per-request latencies and GPU samples."""

    number: int
    label: str = Field(description="'vLLM defaults' or 'best'")
    params: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    ttft_ms: list[float] = Field(default_factory=list)
    tpot_ms: list[float] = Field(default_factory=list)
    e2el_ms: list[float] = Field(default_factory=list)
    gpu_timeseries: list[dict[str, float]] = Field(default_factory=list)
    gpm_status: str | None = Field(default=None, description="The reported window's GPM status: 'ok', or why no SM figures")
    result_path: Path | None = Field(default=None, description="None when result.json was not found")


class ComparisonRow(ClosedModel):
    metric: str
    better: str = Field(description="'higher' or 'lower'")
    default: float | None
    best: float | None
    default_lower_bound: bool = Field(default=False, description="The value is only a lower bound (slo_rate censored)")
    best_lower_bound: bool = False

    @property
    def ratio(self) -> float | None:
        if self.default is None or self.best is None or self.default == 0:
            return None
        return self.best / self.default


class TrialIssue(ClosedModel):
    number: int
    state: str
    reason: str


class StackRow(ClosedModel):
    """One trial's stack profile in its reported window (`stack_*` metrics, `autotune.observe.stacks.activity`)."""

    number: int
    kind: str
    objective: float | None
    engine_core: dict[str, float] = Field(description="activity -> share of the model runner thread's samples (engine core or Worker)")
    api_event_loop_busy: float | None = None
    api_preprocessing_busy: float | None = None


class ReportData(ClosedModel):
    study: str
    engine: EngineKind
    simulated: bool
    objective: str
    objective_names: list[str]
    workload: str
    n_trials: int
    counts: dict[str, int]
    best_how: str
    default: TrialRun | None
    best: TrialRun | None
    comparison: list[ComparisonRow]
    issues: list[TrialIssue]
    confirmation: Confirmation | None = None
    stack_rows: list[StackRow] = Field(default_factory=list, description="Trials run with --stack-profile-hz")


def _result_path(trial: FrozenTrial, study_dir: Path) -> Path | None:
    """The trial's result.json: its recorded path, else the same file in this study folder (moved studies),
    each also as `result.json.gz` (recorded experiments keep large results compressed)."""
    candidates = [study_dir / "trials" / str(trial.number) / "result.json"]
    recorded = trial.user_attrs.get(attrs.RESULT_PATH)
    if recorded:
        candidates.insert(0, Path(recorded))
    candidates = [variant for path in candidates for variant in (path, path.with_name(path.name + ".gz"))]
    return next((path for path in candidates if path.is_file()), None)


def load_run(trial: FrozenTrial, label: str, study_dir: Path) -> TrialRun:
    metrics = {k: float(v) for k, v in (trial.user_attrs.get(attrs.METRICS) or {}).items() if isinstance(v, (int, float))}
    run = TrialRun(number=trial.number, label=label, params=dict(trial.params), metrics=metrics,
                   gpm_status=trial.user_attrs.get(attrs.GPM_STATUS))
    path = _result_path(trial, study_dir)
    if path is None:
        return run
    try:
        raw = path.read_bytes()
        data = json.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw)
        records = measured(RequestRecord.model_validate(r) for r in data.get("requests") or [])
    except (OSError, ValueError, ValidationError) as exc:
        log.warning("trial %d: %s unreadable (%s); no latency curves", trial.number, path, exc)
        return run
    ok = [r for r in records if r.success]
    run.ttft_ms = [r.ttft_ms for r in ok if r.ttft_ms is not None]
    run.e2el_ms = [r.e2el_ms for r in ok if r.e2el_ms is not None]
    run.tpot_ms = [v for v in (tpot_ms(r) for r in ok) if v is not None]
    run.gpu_timeseries = list(data.get("gpu_timeseries") or [])
    if run.gpm_status is None:  # a trial recorded before its status was kept as an attribute: its result says
        gpu = (data.get("summary") or {}).get("gpu") or {}
        run.gpm_status = gpu.get("gpm_status") if isinstance(gpu, dict) else None
    run.result_path = path
    return run


def _issues(session: StudySession) -> list[TrialIssue]:
    issues: list[TrialIssue] = []
    for trial in session.study.get_trials(deepcopy=False, states=(TrialState.FAIL, TrialState.PRUNED)):
        reason = trial.user_attrs.get(attrs.FAIL_REASON) or trial.user_attrs.get(attrs.PRUNE_REASON) or "no reason recorded"
        issues.append(TrialIssue(number=trial.number, state=trial.state.name, reason=str(reason)))
    return issues


def _lower_bound(run: TrialRun | None, metric: str) -> bool:
    flag = LOWER_BOUND_FLAGS.get(metric)
    return bool(run is not None and flag is not None and run.metrics.get(flag) == 1.0)


def _stack_rows(trials: list[FrozenTrial], study_dir: Path) -> list[StackRow]:
    """Per trial: its stack-profile figures, read again from its folded stacks where they are kept (so a report by a
    newer autotune classifies them alike: e.g. the Worker process's thread), else as the trial recorded them."""
    rows = []
    for trial in trials:
        metrics = trial.user_attrs.get(attrs.METRICS) or {}
        folded = study_dir / "trials" / str(trial.number) / "stack-profile"
        if trial.state is TrialState.COMPLETE and folded.is_dir():
            metrics = {**metrics, **stack_metrics(folded, float(trial.values[0]) if trial.values else None)}
        shares = {a: metrics[stack_engine_core_share(a)] for a in ACTIVITIES if stack_engine_core_share(a) in metrics}
        if trial.state is not TrialState.COMPLETE or not shares:
            continue
        rows.append(StackRow(
            number=trial.number, kind=str(trial.user_attrs.get(attrs.CONFIG_KIND, "")),
            objective=float(trial.values[0]) if trial.values else None, engine_core=shares,
            api_event_loop_busy=metrics.get(STACK_API_SERVER_EVENT_LOOP_BUSY),
            api_preprocessing_busy=metrics.get(STACK_API_SERVER_PREPROCESSING_BUSY),
        ))
    return rows


def _gpm_absent(metric: str, *runs: TrialRun | None) -> bool:
    """`metric` is a GPM figure and a compared run was measured without GPM (its row says so, not nothing)."""
    return any(run is not None and gpm_unavailable(metric, run.metrics) for run in runs)


def gather(session: StudySession) -> ReportData:
    study, space = session.study, session.space
    trials = study.get_trials(deepcopy=False)
    counts: dict[str, int] = {}
    for trial in trials:
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    baseline = baseline_trial(study)
    best, how = select_best(study, space)
    default_run = load_run(baseline, "vLLM defaults", session.study_dir) if baseline is not None else None
    best_run = load_run(best, "best", session.study_dir) if best is not None else None
    comparison = [
        ComparisonRow(
            metric=name,
            better=better,
            default=default_run.metrics.get(name) if default_run else None,
            best=best_run.metrics.get(name) if best_run else None,
            default_lower_bound=_lower_bound(default_run, name),
            best_lower_bound=_lower_bound(best_run, name),
        )
        for name, better in COMPARED_METRICS
    ]
    simulated = session.engine is EngineKind.SIMULATED or any(bool(t.user_attrs.get(attrs.SIMULATED)) for t in trials)
    return ReportData(
        study=session.name,
        engine=session.engine,
        simulated=simulated,
        objective=space.objective.kind,
        objective_names=space.objective.metric_names(),
        workload=space.workload,
        n_trials=len(trials),
        counts=counts,
        best_how=how,
        default=default_run,
        best=best_run,
        comparison=[row for row in comparison if row.default is not None or row.best is not None or _gpm_absent(row.metric, default_run, best_run)],
        issues=_issues(session),
        confirmation=confirmation(study, space),
        stack_rows=_stack_rows(trials, session.study_dir),
    )
