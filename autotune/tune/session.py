"""An opened study (`StudySession`): create or resume it by name, check it against the space, trial 0 = vLLM's defaults.

Storage: `sqlite:///<experiments>/<study>/optuna.db` by default, any RDB URL for several workers. A new study gets
one enqueued trial with no params (`config_kind=vllm-defaults`) so every study reports its speedup over vLLM's
defaults; the stored space (its hash) and engine must match the ones a resume asks for.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

from autotune.config import EngineKind
from autotune.errors import ConfigError
from autotune.space import SearchSpace
from autotune.tracking import MlflowTracker, default_tracking_uri
from autotune.tune import attrs
from autotune.tune.budget import config_was_at_fault
from autotune.tune.environment_info import hardware_info, version_info
from autotune.tune.preflight import check_study_dir, min_free_gib
from autotune.redact import redact_url
from autotune.tune.samplers import make_sampler, study_pruner
from autotune.tune.settings import TuneSettings
from autotune.tune.storage import default_storage_url, make_storage, study_exists

log = logging.getLogger(__name__)


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
        study_name=name, storage=storage, sampler=make_sampler(space), pruner=study_pruner(space), directions=directions,
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


def ensure_defaults_trial(study: optuna.Study) -> bool:
    """Enqueue vLLM's defaults unless the study has them (done, queued, running). True when enqueued."""
    for trial in study.get_trials(deepcopy=False):
        if trial.user_attrs.get(attrs.CONFIG_KIND) != attrs.VLLM_DEFAULTS:
            continue
        if trial.state is not TrialState.FAIL or config_was_at_fault(trial):
            return False
    study.enqueue_trial({}, user_attrs={attrs.CONFIG_KIND: attrs.VLLM_DEFAULTS})
    return True


