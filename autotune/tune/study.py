"""The tuning study: create or resume (by name), trial 0 = vLLM's defaults, optimize, write the results.

Storage: `sqlite:///<experiments>/<study>/optuna.db` by default, any RDB URL for several workers.
A new study gets one enqueued trial with no params (`config_kind=vllm-defaults`) so every study reports
its speedup over vLLM's defaults. On resume, RUNNING trials of dead workers on this host are failed at
once (heartbeats cover other hosts). TPE with constraints (`trial.set_constraint`; Optuna 5 deprecates
`constraints_func`) for one objective, TPE multi-objective (or NSGA-II, `sampler.kind: nsga2`) for two.
`--n-trials` counts trials of this run (as Optuna and several workers do); without it the run goes on
until the study holds `budget.n_trials` finished trials (so a resume finishes the budget).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from pydantic import BaseModel, ConfigDict, Field

from autotune.config import EngineKind
from autotune.errors import ConfigError
from autotune.space import SearchSpace, grid_choices
from autotune.tracking import MlflowTracker, default_tracking_uri, flatten
from autotune.tune import attrs
from autotune.tune.best import build_best_config, feasible_trials
from autotune.tune.confirm import Confirmation, confirmation, enqueue_repeats
from autotune.tune.objective import TrialFailed, TuneDisplay, TuneObjective
from autotune.hub import require_space_models
from autotune.tune.preflight import check_engine, check_study_dir, check_trial_inputs, min_free_gib, prepare_engine_env
from autotune.tune.recovery import recover_dead_workers
from autotune.redact import redact_url
from autotune.tune.report import write_plots, write_trials_csv
from autotune.tune.screen import ScreenSettings
from autotune.tune.stops import StudyStopped, stop_in_chain
from autotune.tune.storage import default_storage_url, make_storage, study_exists
from autotune.tune.trial import TrialRunner

log = logging.getLogger(__name__)

STUDY_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class TuneSettings(BaseModel):
    """How one `autotune tune` run goes (the CLI's options; the space says what is tuned)."""

    model_config = ConfigDict(extra="forbid")

    study: Annotated[str, Field(pattern=STUDY_NAME_PATTERN)] | None = Field(default=None, description="Default: space name")
    engine: EngineKind | None = Field(default=None, description="Default: the space's engine")
    storage: str | None = Field(default=None, description="Optuna RDB URL; default SQLite in the study folder")
    n_trials: Annotated[int, Field(ge=0)] | None = Field(default=None, description="Trials this run; default: the budget's rest")
    timeout_s: Annotated[float, Field(gt=0)] | None = None
    mlflow_uri: str | None = Field(default=None, description="Default: SQLite in the study folder")
    mlflow: bool = True
    experiments_dir: Path = Path("experiments")
    screen: ScreenSettings | None = Field(default=None, description="Simulator screening before each trial (--screen K)")
    server_cpus: list[int] | None = Field(default=None, description="Pin each trial's server (and its children) here")
    client_cpus: list[int] | None = Field(default=None, description="Pin the load generator here (replaces load.client_cpus)")
    confirm: Annotated[int, Field(ge=0, le=10)] = Field(
        default=0, description="Repeats of the best config and the defaults to queue, interleaved (--confirm N)"
    )
    stack_profile_hz: Annotated[float, Field(gt=0, le=1000)] | None = Field(
        default=None, description="Sample the server processes' Python stacks in each measured window (--stack-profile-hz)"
    )
    compile_cache_dir: Path | None = Field(
        default=None,
        description="VLLM_CACHE_ROOT of every vLLM trial server (--compile-cache); default: the environment's, else "
        "vLLM's own (~/.cache/vllm)",
    )


class TuneOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid")

    study: str
    study_dir: Path
    storage: str = Field(description="Password masked")
    engine: EngineKind
    best_path: Path | None
    best_trial: int | None
    trials_csv: Path
    plots: list[Path]
    counts: dict[str, int]
    recovered: list[int] = Field(default_factory=list, description="Trials failed because their worker died")
    ran: int = 0
    confirmation: Confirmation | None = Field(default=None, description="Best vs defaults over repeated measurements")


class StudySession:
    """An opened study and what goes with it (folder, engine, MLflow)."""

    def __init__(
        self, *, space: SearchSpace, study: optuna.Study, study_dir: Path, storage_url: str, engine: EngineKind,
        tracker: MlflowTracker | None,
    ) -> None:
        self.space = space
        self.study = study
        self.study_dir = study_dir
        self.storage_url = storage_url
        self.engine = engine
        self.tracker = tracker
        self._environment_tags: dict[str, str] | None = None

    @property
    def name(self) -> str:
        return self.study.study_name

    def environment_tags(self) -> dict[str, str]:
        """This worker's hardware and versions (JSON), computed once."""
        if self._environment_tags is None:
            import json

            from autotune.tune.environment_info import hardware_info, version_info

            hardware = hardware_info()
            self._environment_tags = {
                "hardware": json.dumps(hardware, sort_keys=True, default=str),
                "gpus": ", ".join(map(str, hardware.get("gpus") or [])) or "none",
                "versions": json.dumps(version_info(), sort_keys=True),
            }
        return self._environment_tags

    def study_tags(self) -> dict[str, str]:
        simulated = self.engine is EngineKind.SIMULATED
        return {
            **self.environment_tags(),
            "study": self.name,
            "search_space": self.space.name,
            "engine": self.engine.value,
            "simulated": "true" if simulated else "false",
            "objective": self.space.objective.kind,
            "workload": self.space.workload,
            "optuna_storage": redact_url(self.storage_url),
        }


def study_dir_for(experiments_dir: Path, study: str) -> Path:
    return experiments_dir / study


SEED_STRIDE = 1_000_003  # a prime: (seed, trial number) pairs map to distinct RNG seeds


def trial_seed(seed: int, number: int) -> int:
    """The sampler's RNG seed for one trial: a pure function of the configured seed and the trial number."""
    return (seed * SEED_STRIDE + number) % 2**32


class _PerTrialSeed:
    """Mixin: reseed the sampler's RNGs from (configured seed, trial number) before each trial.

    Trial numbers are handed out by the storage, so two workers never draw with the same seed even when
    they start at once with the same history (a fixed per-process seed made them sample the same point),
    and a single worker stays reproducible: the same seed gives the same trials, first run or resumed.
    Uses Optuna's RNG attributes (`_rng`, `_random_sampler`), the ones its own `reseed_rng()` resets.
    """

    _base_seed: int

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        seed = trial_seed(self._base_seed, trial.number)
        for sampler in (self, getattr(self, "_random_sampler", None)):
            rng = getattr(sampler, "_rng", None)
            if rng is not None:
                rng.rng.seed(seed)
        super().before_trial(study, trial)  # type: ignore[misc]


class _GridWithQueue(optuna.samplers.GridSampler):
    """Optuna's grid stops the study once every grid point is taken; queued trials (repeats, guided trials) still run."""

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            return
        super().after_trial(study, trial, state, values)


class _SeededTPE(_PerTrialSeed, optuna.samplers.TPESampler):
    pass


class _SeededNSGAII(_PerTrialSeed, optuna.samplers.NSGAIISampler):
    pass


class _SeededRandom(_PerTrialSeed, optuna.samplers.RandomSampler):
    pass


def _make_sampler(space: SearchSpace) -> optuna.samplers.BaseSampler:
    """The space's sampler; with `sampler.compile_key_runs` > 1, wrapped so that consecutive sampled trials keep their
    compile-key parameters (autotune.tune.compile_order)."""
    sampler = _base_sampler(space)
    if space.sampler.compile_key_runs > 1 and space.sampler.kind != "grid":
        from autotune.tune.compile_order import CompileKeyRuns, compile_key_params

        key_params = compile_key_params(space)
        if key_params:
            return CompileKeyRuns(sampler, key_params, space.sampler.compile_key_runs)
    return sampler


def _base_sampler(space: SearchSpace) -> optuna.samplers.BaseSampler:
    """The space's Optuna sampler. With `sampler.seed` set, each trial's draws are seeded by (seed, trial number):
    reproducible for one worker, distinct across workers sharing the study. Without a seed, every
    process draws from fresh entropy."""
    seed = space.sampler.seed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if space.sampler.kind == "grid":
            sampler: optuna.samplers.BaseSampler = _GridWithQueue(grid_choices(space), seed=seed)
            return sampler  # the grid's order is its own (seeded); not re-seeded per trial
        if space.sampler.kind == "random":
            sampler = optuna.samplers.RandomSampler() if seed is None else _SeededRandom(seed=seed)
        elif space.sampler.kind == "nsga2":
            population = max(4, space.sampler.n_startup_trials)
            sampler = (
                optuna.samplers.NSGAIISampler(population_size=population)
                if seed is None
                else _SeededNSGAII(seed=seed, population_size=population)
            )
        else:
            options: dict[str, Any] = {
                "n_startup_trials": space.sampler.n_startup_trials,
                "multivariate": True,
                "group": True,  # conditional parameters: model each co-occurring group
                "constant_liar": True,  # several workers do not pile onto one point
            }
            sampler = optuna.samplers.TPESampler(**options) if seed is None else _SeededTPE(seed=seed, **options)
    if seed is not None:
        sampler._base_seed = seed  # type: ignore[attr-defined]
    return sampler


def _make_pruner(space: SearchSpace) -> optuna.pruners.BasePruner:
    """The space's pruner for screened trials (`fidelity`); without screening nothing is ever pruned by it."""
    if space.fidelity is None:
        return optuna.pruners.NopPruner()
    from autotune.tune.pruning import make_pruner

    return make_pruner(space.fidelity.pruner)


def open_study(space: SearchSpace, settings: TuneSettings, *, create: bool = True) -> StudySession:
    """Create or resume the study; checks the folder, storage, the space is the same as the stored one."""
    name = settings.study or space.name
    study_dir = study_dir_for(settings.experiments_dir, name).resolve()
    check_study_dir(study_dir, min_free_gib=min_free_gib())
    storage_url = settings.storage or default_storage_url(study_dir)
    storage = make_storage(storage_url)
    exists = study_exists(storage, name)
    if not exists and not create:
        raise ConfigError(f"study {name!r}: not found in {redact_url(storage_url)}")
    engine = settings.engine or space.engine
    directions = space.objective.directions()
    study = optuna.create_study(
        study_name=name, storage=storage, sampler=_make_sampler(space), pruner=_make_pruner(space), directions=directions,
        load_if_exists=True,
    )
    if [d.name.lower() for d in study.directions] != directions:
        raise ConfigError(f"study {name!r} optimizes {len(study.directions)} objective(s) in the storage; the space asks {directions}")
    stored_hash = study.user_attrs.get(attrs.STUDY_SPACE_HASH)
    if stored_hash is None:
        study.set_user_attr(attrs.STUDY_SPACE_HASH, space.content_hash())
        study.set_user_attr(attrs.STUDY_SPACE, space.model_dump(mode="json", exclude_unset=True))  # `otherwise` keeps meaning "unset"
        study.set_user_attr(attrs.STUDY_ENGINE, engine.value)
        study.set_user_attr(attrs.STUDY_OBJECTIVE, space.objective.model_dump(mode="json"))
        with warnings.catch_warnings():  # experimental in Optuna, and only a label
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(space.objective.metric_names())  # optuna-dashboard names its axes with them
    elif not space.matches_hash(stored_hash):
        raise ConfigError(
            f"study {name!r} was created from a different search space (parameters, engine base, workload, load, SLO "
            "or objective changed): use another --study name, or the original space"
        )
    elif stored_hash != space.content_hash():  # recorded under an earlier rule: store the current one from now on
        study.set_user_attr(attrs.STUDY_SPACE_HASH, space.content_hash())
        log.info("study %s: space hash migrated to the current rule", name)
    stored_engine = study.user_attrs.get(attrs.STUDY_ENGINE)
    if stored_engine is not None and stored_engine != engine.value:
        raise ConfigError(f"study {name!r} measures the {stored_engine} engine; this run asks {engine.value}")
    if create:
        ensure_defaults_trial(study)  # trial 0 of a new study; again if a dead worker lost it
    tracker = None
    if settings.mlflow:
        tracker = MlflowTracker(
            settings.mlflow_uri or default_tracking_uri(study_dir), study=name, artifact_dir=study_dir / "mlartifacts"
        )
    return StudySession(space=space, study=study, study_dir=study_dir, storage_url=storage_url, engine=engine, tracker=tracker)


def reopen_study(
    name: str, *, experiments_dir: Path, storage: str | None = None, mlflow_uri: str | None = None, mlflow: bool = True
) -> StudySession:
    """An existing study with the space it was created from (for `best`, `trials`, `sync-mlflow`)."""
    study_dir = study_dir_for(experiments_dir, name).resolve()
    storage_url = storage or default_storage_url(study_dir)
    if storage is None and not (study_dir / "optuna.db").is_file():
        raise ConfigError(f"study {name!r}: no {study_dir / 'optuna.db'} (give --storage or --experiments-dir)")
    rdb = make_storage(storage_url, heartbeat=False)
    if not study_exists(rdb, name):
        raise ConfigError(f"study {name!r}: not found in {redact_url(storage_url)}")
    study = optuna.load_study(study_name=name, storage=rdb)
    data = study.user_attrs.get(attrs.STUDY_SPACE)
    if data is None:
        raise ConfigError(f"study {name!r} was not created by autotune tune (no search space stored)")
    space = SearchSpace.model_validate(data)
    engine = EngineKind(study.user_attrs.get(attrs.STUDY_ENGINE, space.engine.value))
    tracker = (
        MlflowTracker(mlflow_uri or default_tracking_uri(study_dir), study=name, artifact_dir=study_dir / "mlartifacts")
        if mlflow
        else None
    )
    return StudySession(space=space, study=study, study_dir=study_dir, storage_url=storage_url, engine=engine, tracker=tracker)


def _config_was_at_fault(trial: FrozenTrial) -> bool:
    return not attrs.environmental_failure(trial.user_attrs.get(attrs.FAIL_REASON))


def counted_trials(study: optuna.Study) -> int:
    """Finished trials that count against the budget (those lost to a dead worker or Ctrl-C do not)."""
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
    return sum(1 for t in finished if t.state is not TrialState.FAIL or _config_was_at_fault(t))


def spent_budget_message(study: optuna.Study, space: SearchSpace) -> str | None:
    """When the budget has no trial left: what it was spent on and how to go on (None while trials are left)."""
    counted = counted_trials(study)
    if counted < space.budget.n_trials:
        return None
    states = [t.state for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))]
    spent = ", ".join(f"{states.count(s)} {s.name.lower()}" for s in (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED) if s in states)
    feasible = len(feasible_trials(study))
    on = "no trial feasible: the budget went on failures" if feasible == 0 else f"{feasible} feasible"
    return (
        f"study {study.study_name!r}: its budget of {space.budget.n_trials} trials is spent ({spent}; {on}), "
        f"so no trial runs. See why with `autotune trials {study.study_name}`; run more with --n-trials N"
    )


def _finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)))


def ensure_defaults_trial(study: optuna.Study) -> bool:
    """Enqueue vLLM's defaults unless the study has them (done, queued, running). True when enqueued."""
    for trial in study.get_trials(deepcopy=False):
        if trial.user_attrs.get(attrs.CONFIG_KIND) != attrs.VLLM_DEFAULTS:
            continue
        if trial.state is not TrialState.FAIL or _config_was_at_fault(trial):
            return False
    study.enqueue_trial({}, user_attrs={attrs.CONFIG_KIND: attrs.VLLM_DEFAULTS})
    return True


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the study like Ctrl-C: the running trial's server is stopped and the trial marked."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_tuning(
    space: SearchSpace,
    settings: TuneSettings,
    *,
    display: TuneDisplay | None = None,
    callbacks: list[Callable[[optuna.Study, FrozenTrial], None]] | None = None,
    runner_factory: Callable[..., TrialRunner] = TrialRunner,
    session: StudySession | None = None,
) -> TuneOutcome:
    """Run (or resume) the study to its budget and write best.yaml, trials.csv, plots, MLflow.

    `session`: a study already opened with `open_study(space, settings)` (else it is opened here).
    """
    from autotune.bench.trace import check_trace_workload
    from autotune.bench.workload import resolve_workload

    check_engine(settings.engine or space.engine)  # before the study records an engine
    prepare_engine_env(space)  # literal secrets -> this process's environment; every ${VAR} set (idempotent)
    require_space_models(space)  # hub ids: their configs cached or fetched, or one clear error (memoized)
    if session is None:
        check_trial_inputs(space, settings)  # workload, dataset, trace, models: before the study is created
    workload = resolve_workload(space.workload)  # a bad workload fails before any trial
    check_trace_workload(space.load, workload)  # and a bad trace, or mode replay without one
    screener = None
    if settings.screen is not None:  # a bad or uncalibrated screening profile fails before any trial
        from autotune.tune.screen import Screener

        screener = Screener(space, settings.screen, workload)
    session = session or open_study(space, settings)
    study = session.study
    recovered = recover_dead_workers(study)
    ensure_defaults_trial(study)  # after recovery: a defaults trial lost to a dead worker is queued again
    enqueue_repeats(study, space, settings.confirm)  # --confirm N: best and defaults again, interleaved
    if session.tracker is not None:
        session.tracker.start_study(tags=session.study_tags(), params=_study_params(space))
        _sync_missing(session)  # trials finished while MLflow was down or by a dead worker
    load = space.load if settings.client_cpus is None else space.load.model_copy(update={"client_cpus": settings.client_cpus})
    cache_root = _compile_cache(session.engine, settings.compile_cache_dir)
    runner = runner_factory(
        study_dir=session.study_dir,
        engine_kind=session.engine,
        workload=workload,
        load=load,
        slo=space.slo,
        settings=space.trial,
        **({"server_cpus": settings.server_cpus} if settings.server_cpus else {}),
        **({"stack_profile_hz": settings.stack_profile_hz} if settings.stack_profile_hz else {}),
        **({"compile_cache_root": cache_root} if cache_root is not None else {}),
    )
    objective = TuneObjective(
        space=space,
        runner=runner,
        engine_kind=session.engine,
        study_name=session.name,
        tracker=session.tracker,
        study_tags=session.study_tags(),
        display=display,
    )
    n_trials = settings.n_trials if settings.n_trials is not None else max(0, space.budget.n_trials - counted_trials(study))
    timeout_s = settings.timeout_s or space.budget.timeout_s
    before = _finished(study)
    log.info("study %s: %d trial(s) to run (storage %s)", session.name, n_trials, redact_url(session.storage_url))
    interrupted = stopped = False
    try:
        with _sigterm_as_interrupt(), _stops_as_one_error(session.study_dir, known=lambda: objective.stopped):
            if n_trials > 0 and screener is not None:
                from autotune.tune.screen import optimize_screened

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
            with _stops_as_one_error(session.study_dir):
                outcome = finalize(session, recovered=recovered, ran=_finished(study) - before, interrupted=interrupted)
    return outcome


def _compile_cache(engine: EngineKind, configured: Path | None) -> Path | None:
    """The compile cache every vLLM trial server shares (None for the simulated engine, which compiles nothing)."""
    if engine is not EngineKind.VLLM:
        return None
    from autotune.tune.compile_cache import cached_keys, compile_cache_root

    root = compile_cache_root(configured)
    log.info("vLLM compile cache %s: %d compile key(s) cached", root, len(cached_keys(root)))
    return root


@contextlib.contextmanager
def _stops_as_one_error(study_dir: Path, known: Callable[[], StudyStopped | None] = lambda: None) -> Iterator[None]:
    """An error while the study was stopping (storage gone, folder out of space) becomes that stop alone.

    Optuna's trial loop replaces the objective's error when its own `tell` then fails against the same storage
    (an AssertionError, an UnboundLocalError): the stop is the one the objective met (`known`), else one found
    in the error's chain.
    """
    try:
        yield
    except StudyStopped:
        raise
    except Exception as exc:
        stop = known() or stop_in_chain(exc, study_dir)
        if stop is None:
            raise
        raise stop from None


def finalize(session: StudySession, *, recovered: list[int] | None = None, ran: int = 0, interrupted: bool = False) -> TuneOutcome:
    """best.yaml, trials.csv, plots; the parent MLflow run gets them. Safe to call on a partial study."""
    study, space = session.study, session.space
    tuned = build_best_config(study, space, session.engine)
    best_path = tuned.write(session.study_dir / "best.yaml") if tuned is not None else None
    csv_path = write_trials_csv(study, session.study_dir / "trials.csv")
    plots = write_plots(study, space, session.study_dir / "plots")
    confirmed = confirmation(study, space)
    if confirmed is not None:
        (session.study_dir / "confirmation.json").write_text(confirmed.model_dump_json(indent=2))
    if session.tracker is not None:
        files = [csv_path, *plots] + ([best_path] if best_path is not None else [])
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
        plots=plots,
        counts=counts,
        recovered=recovered or [],
        ran=ran,
        confirmation=confirmed,
    )


def _study_params(space: SearchSpace) -> dict[str, Any]:
    data = space.model_dump(mode="json", exclude={"parameters", "description"})
    params = flatten(data)
    params["parameters"] = ", ".join(space.parameters)
    return params


def _sync_missing(session: StudySession) -> list[int]:
    """Log to MLflow every finished trial it lacks (idempotent: MLflow is asked which exist).

    Several workers: a trial's own worker logs it before Optuna records its state, so the finished trials are
    read BEFORE MLflow is asked (the other order let a trial finished in between be logged a second time);
    trials whose worker recorded `mlflow_synced` are skipped; MLflow is asked again right before each log.
    """
    tracker = session.tracker
    if tracker is None:
        return []
    finished = session.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
    missing = [t for t in finished if t.user_attrs.get(attrs.MLFLOW_SYNCED) is not True]
    if not missing:
        return []
    logged = tracker.logged_trials()
    if logged is None:
        return []
    synced: list[int] = []
    tags = session.study_tags()
    for trial in missing:
        if trial.number in logged:
            continue
        logged = tracker.logged_trials() or logged  # another worker syncing at the same time
        if trial.number in logged:
            continue
        record = attrs.trial_record(
            number=trial.number, state=trial.state.name, params=trial.params, user_attrs=trial.user_attrs, study_tags=tags
        )
        if tracker.log_trial(record) is not None:
            synced.append(trial.number)
    return synced


def sync_mlflow(name: str, *, experiments_dir: Path, storage: str | None = None, mlflow_uri: str | None = None) -> list[int]:
    """`autotune sync-mlflow`: log the trials MLflow lacks, then the study's files on the parent run."""
    session = reopen_study(name, experiments_dir=experiments_dir, storage=storage, mlflow_uri=mlflow_uri)
    assert session.tracker is not None
    if session.tracker.start_study(tags=session.study_tags(), params=_study_params(session.space)) is None:
        raise ConfigError(f"MLflow at {session.tracker.shown_uri} is unreachable: nothing synced")
    synced = _sync_missing(session)
    finalize(session)
    return synced


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
