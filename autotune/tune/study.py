"""The tuning study's front door: `start_study` (checks, then create or resume), `run_tuning` (optimize, write results).

TPE with constraints (`trial.set_constraint`) for one objective, TPE multi-objective (or NSGA-II, `sampler.kind:
nsga2`) for two (autotune.tune.samplers). On resume, RUNNING trials of dead workers on this host are failed at once
(heartbeats cover other hosts). The budget rules are in autotune.tune.budget, what a study leaves in its folder in
autotune.tune.finalize, MLflow's catching up in autotune.tune.mlflow_sync, what stops a study in autotune.tune.stops.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial

from autotune.bench.trace import check_trace_workload
from autotune.bench.workload import Workload, resolve_workload
from autotune.config import EngineKind
from autotune.space import SearchSpace
from autotune.tune.budget import finished_count, plan_run
from autotune.tune.compile_cache import cached_keys, compile_cache_root
from autotune.tune.confirm import enqueue_repeats
from autotune.tune.finalize import finalize
from autotune.tune.mlflow_sync import study_params, sync_missing
from autotune.tune.objective import TuneDisplay, TuneObjective
from autotune.tune.record import TrialFailed
from autotune.tune.preflight import check_engine, check_trial_inputs, prepare_engine_env, require_space_models
from autotune.tune.recovery import recover_dead_workers
from autotune.redact import redact_url
from autotune.tune.screen import Screener, optimize_screened
from autotune.tune.session import StudySession, ensure_defaults_trial, open_study
from autotune.tune.settings import TuneOutcome, TuneSettings
from autotune.tune.stops import StudyStopped, sigterm_as_interrupt, stops_as_one_error
from autotune.tune.trial import TrialRunner
from autotune.tune.warm_start import WARM_PARENT_LOG, WarmParent

log = logging.getLogger(__name__)


def start_study(space: SearchSpace, settings: TuneSettings) -> StudySession:
    """Everything a run checks before its study exists, then the study created or resumed.

    The engine is importable, the space's `${VAR}`s are set (its literal secrets go to this process's environment),
    the workload, dataset, trace, model folders and screening profile are readable, its hub models fetched; then the folder, storage, stored space and engine (autotune.tune.session.open_study).
    """
    check_engine(settings.engine or space.engine)  # before the study records an engine
    prepare_engine_env(space)
    check_trial_inputs(space, settings)  # one error with a line per problem
    require_space_models(space)  # hub ids: their configs cached or fetched (memoized)
    return open_study(space, settings)


def run_tuning(
    space: SearchSpace,
    settings: TuneSettings,
    *,
    display: TuneDisplay | None = None,
    callbacks: list[Callable[[optuna.Study, FrozenTrial], None]] | None = None,
    runner_factory: Callable[..., TrialRunner] = TrialRunner,
    session: StudySession | None = None,
) -> TuneOutcome:
    """Run (or resume) the study to its budget and write best.yaml, trials.csv, MLflow.

    `session`: a study already opened with `start_study(space, settings)` (else it is started here).
    """
    session = session or start_study(space, settings)
    workload = resolve_workload(space.workload)  # a bad workload fails before any trial
    check_trace_workload(space.load, workload)  # and a bad trace, or mode replay without one
    screener = None if settings.screen is None else Screener(space, settings.screen, workload)
    study = session.study
    recovered = recover_dead_workers(study)
    ensure_defaults_trial(study)  # after recovery: a defaults trial lost to a dead worker is queued again
    enqueue_repeats(study, space, settings.confirm)  # --confirm N: best and defaults again, interleaved
    if session.tracker is not None:
        session.tracker.start_study(tags=session.study_tags(), params=study_params(space))
        sync_missing(session)  # trials finished while MLflow was down or by a dead worker
    warm_parent = WarmParent(session.engine, session.study_dir / WARM_PARENT_LOG) if settings.warm_start else None
    try:
        return _optimize(
            session, space, settings, workload, screener, runner_factory, warm_parent, recovered, display, callbacks
        )
    finally:
        if warm_parent is not None:
            warm_parent.close()


def _optimize(
    session: StudySession, space: SearchSpace, settings: TuneSettings, workload: Workload, screener: Screener | None,
    runner_factory: Callable[..., TrialRunner], warm_parent: WarmParent | None, recovered: list[int],
    display: TuneDisplay | None, callbacks: list[Callable[[optuna.Study, FrozenTrial], None]] | None,
) -> TuneOutcome:
    """The study's trials to its budget, then its results (best.yaml, trials.csv, MLflow)."""
    study = session.study
    runner = _make_runner(runner_factory, session, space, settings, workload, warm_parent)
    objective = TuneObjective(
        space=space, runner=runner, engine_kind=session.engine, study_name=session.name, tracker=session.tracker,
        study_tags=session.study_tags(), display=display,
    )
    n_trials = plan_run(study, space, settings.n_trials).n_trials
    timeout_s = settings.timeout_s or space.budget.timeout_s
    before = finished_count(study)
    log.info("study %s: %d trial(s) to run (storage %s)", session.name, n_trials, redact_url(session.storage_url))
    interrupted = stopped = False
    try:
        with sigterm_as_interrupt(), stops_as_one_error(session.study_dir, known=lambda: objective.stopped):
            if n_trials > 0 and screener is not None:
                optimize_screened(
                    study, objective, screener, n_trials=n_trials, timeout_s=timeout_s, catch=(TrialFailed,), callbacks=callbacks
                )
            elif n_trials > 0:
                study.optimize(objective, n_trials=n_trials, timeout=timeout_s, catch=(TrialFailed,), callbacks=callbacks)
    except KeyboardInterrupt:
        interrupted = True
        raise
    except StudyStopped:
        stopped = True  # the storage or the folder failed: writing the study's results would fail the same way
        raise
    finally:
        if not stopped:
            with stops_as_one_error(session.study_dir):
                outcome = finalize(session, recovered=recovered, ran=finished_count(study) - before, interrupted=interrupted)
    return outcome


def _make_runner(
    runner_factory: Callable[..., TrialRunner], session: StudySession, space: SearchSpace, settings: TuneSettings,
    workload: Workload, warm_parent: WarmParent | None = None,
) -> TrialRunner:
    load = space.load if settings.client_cpus is None else space.load.model_copy(update={"client_cpus": settings.client_cpus})
    cache_root = _compile_cache(session.engine, settings.compile_cache_dir)
    return runner_factory(
        study_dir=session.study_dir,
        engine_kind=session.engine,
        workload=workload,
        load=load,
        slo=space.slo,
        settings=space.trial,
        **({"server_cpus": settings.server_cpus} if settings.server_cpus else {}),
        **({"stack_profile_hz": settings.stack_profile_hz} if settings.stack_profile_hz else {}),
        **({"compile_cache_root": cache_root} if cache_root is not None else {}),
        **({"warm_parent": warm_parent} if warm_parent is not None else {}),
    )


def _compile_cache(engine: EngineKind, configured: Path | None) -> Path | None:
    """The compile cache every vLLM trial server shares (None for the simulated engine, which compiles nothing)."""
    if engine is not EngineKind.VLLM:
        return None
    root = compile_cache_root(configured)
    log.info("vLLM compile cache %s: %d compile key(s) cached", root, len(cached_keys(root)))
    return root
