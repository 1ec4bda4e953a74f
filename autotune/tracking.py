"""MLflow tracking: one parent run per study, one nested run per trial. The only module importing mlflow.

Default store: `sqlite:///<experiments>/<study>/mlflow.db`, artifacts under `<experiments>/<study>/mlartifacts`;
any tracking URI (an MLflow server) may be given instead. MLflow being unreachable never stops a study:
every call here returns None after logging a warning, and `autotune sync-mlflow` logs what is missing later.
A trial is logged once: its run is found again by the tags (study, trial number) before one is created.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from autotune.tune.redact import redact_mapping, redact_url

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

EXPERIMENT_NAME = "autotune"
TAG_STUDY = "autotune.study"
TAG_ROLE = "autotune.role"
TAG_TRIAL = "autotune.trial_number"
_MAX_PARAMS_PER_BATCH = 100
_MAX_PARAM_CHARS = 6000


class TrialRecord(BaseModel):
    """What MLflow gets for one finished trial (built by the tuner; secrets already removed here)."""

    model_config = ConfigDict(extra="forbid")

    number: int
    state: str = Field(description="Optuna state: COMPLETE, FAIL, PRUNED")
    params: dict[str, Any] = Field(default_factory=dict, description="Flattened EngineConfig and trial params")
    metrics: dict[str, float] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    artifacts: list[Path] = Field(default_factory=list)


def default_tracking_uri(study_dir: Path) -> str:
    return f"sqlite:///{(study_dir / 'mlflow.db').resolve()}"


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings become dotted keys (mm_processor_kwargs.use_fast)."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


class MlflowTracker:
    """Logs a study to MLflow; every public method swallows MLflow failures (warning) and returns None then."""

    def __init__(self, tracking_uri: str, *, study: str, artifact_dir: Path | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.study = study
        self.artifact_dir = artifact_dir
        self._client: MlflowClient | None = None
        self._experiment_id: str | None = None
        self._parent_run_id: str | None = None
        self._reachable: bool | None = None

    @property
    def shown_uri(self) -> str:
        return redact_url(self.tracking_uri)

    # -- connection -------------------------------------------------------------------------------

    def _connect(self) -> MlflowClient | None:
        if self._reachable is False:
            return None
        if self._client is not None:
            return self._client
        if self.tracking_uri.startswith(("http://", "https://")) and not _http_reachable(self.tracking_uri):
            self._reachable = False
            log.warning("MLflow at %s is unreachable: the study goes on; run `autotune sync-mlflow` later", self.shown_uri)
            return None
        # A remote server that stops answering must not hold a trial for minutes of retries.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        try:
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=self.tracking_uri)
            experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
            if experiment is None:
                location = self.artifact_dir.resolve().as_uri() if self.artifact_dir is not None else None
                self._experiment_id = client.create_experiment(EXPERIMENT_NAME, artifact_location=location)
            else:
                self._experiment_id = experiment.experiment_id
        except Exception as exc:  # noqa: BLE001 - any MLflow failure degrades to "not synced"
            self._reachable = False
            log.warning("MLflow at %s failed (%s): the study goes on unsynced", self.shown_uri, _short(exc))
            return None
        self._client = client
        self._reachable = True
        return client

    def _guard(self, action: str, func: Any, *args: Any) -> Any:
        client = self._connect()
        if client is None:
            return None
        try:
            return func(client, *args)
        except Exception as exc:  # noqa: BLE001
            log.warning("MLflow: %s failed (%s); the study goes on", action, _short(exc))
            return None

    # -- runs -------------------------------------------------------------------------------------

    def start_study(self, *, tags: Mapping[str, str], params: Mapping[str, Any]) -> str | None:
        """The study's parent run: found by tag on resume, created otherwise. Returns its run id."""
        return self._guard("parent run", self._start_study, dict(tags), dict(params))

    def _start_study(self, client: MlflowClient, tags: dict[str, str], params: dict[str, Any]) -> str:
        if self._parent_run_id is not None:
            return self._parent_run_id
        found = client.search_runs(
            [self._experiment_id or "0"],
            filter_string=f"tags.`{TAG_STUDY}` = '{self.study}' and tags.`{TAG_ROLE}` = 'study'",
            max_results=1,
        )
        if found:
            run_id = found[0].info.run_id
            client.update_run(run_id, status="RUNNING")
        else:
            run = client.create_run(
                self._experiment_id or "0",
                run_name=f"study-{self.study}",
                tags={**_clean_tags(tags), TAG_STUDY: self.study, TAG_ROLE: "study"},
            )
            run_id = run.info.run_id
            _log_batch(client, run_id, params=params, metrics={})
        self._parent_run_id = run_id
        return run_id

    def log_trial(self, record: TrialRecord) -> str | None:
        """One nested run for a finished trial; logged once (an existing run is returned as is)."""
        return self._guard(f"trial {record.number}", self._log_trial, record)

    def _log_trial(self, client: MlflowClient, record: TrialRecord) -> str:
        parent = self._parent_run_id or self._start_study(client, {}, {})
        existing = self._trial_run(client, record.number)
        if existing is not None:
            return existing
        tags = {
            **_clean_tags(record.tags),
            TAG_STUDY: self.study,
            TAG_ROLE: "trial",
            TAG_TRIAL: str(record.number),
            "trial_state": record.state,
            "mlflow.parentRunId": parent,
        }
        run = client.create_run(self._experiment_id or "0", run_name=f"trial-{record.number}", tags=tags)
        run_id = run.info.run_id
        _log_batch(client, run_id, params=record.params, metrics=record.metrics)
        for path in record.artifacts:
            if path.is_file():
                client.log_artifact(run_id, str(path))
        client.set_terminated(run_id, status="FINISHED" if record.state == "COMPLETE" else "FAILED")
        return run_id

    def _trial_run(self, client: MlflowClient, number: int) -> str | None:
        found = client.search_runs(
            [self._experiment_id or "0"],
            filter_string=(
                f"tags.`{TAG_STUDY}` = '{self.study}' and tags.`{TAG_ROLE}` = 'trial' and tags.`{TAG_TRIAL}` = '{number}'"
            ),
            max_results=1,
        )
        return found[0].info.run_id if found else None

    def logged_trials(self) -> set[int] | None:
        """Trial numbers that already have a run (None when MLflow is unreachable)."""
        return self._guard("listing trial runs", self._logged_trials)

    def _logged_trials(self, client: MlflowClient) -> set[int]:
        numbers: set[int] = set()
        token: str | None = None
        while True:
            page = client.search_runs(
                [self._experiment_id or "0"],
                filter_string=f"tags.`{TAG_STUDY}` = '{self.study}' and tags.`{TAG_ROLE}` = 'trial'",
                max_results=1000,
                page_token=token,
            )
            numbers.update(int(run.data.tags[TAG_TRIAL]) for run in page if TAG_TRIAL in run.data.tags)
            token = page.token
            if not token:
                return numbers

    def log_study_results(
        self, *, files: Iterable[Path], metrics: Mapping[str, float] | None = None, tags: Mapping[str, str] | None = None
    ) -> bool:
        """On the parent: best config, trials CSV, plots; best metrics and tags. True when logged."""
        return bool(self._guard("study artifacts", self._log_study_results, list(files), dict(metrics or {}), dict(tags or {})))

    def _log_study_results(
        self, client: MlflowClient, files: list[Path], metrics: dict[str, float], tags: dict[str, str]
    ) -> bool:
        parent = self._parent_run_id or self._start_study(client, {}, {})
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        client.log_batch(
            parent,
            metrics=[Metric(f"best.{key}", float(value), now, 0) for key, value in metrics.items()],
            tags=[RunTag(key, value) for key, value in _clean_tags(tags).items()],
        )
        for path in files:
            if path.is_file():
                client.log_artifact(parent, str(path), artifact_path="study")
        return True

    def finish_study(self, status: str = "FINISHED") -> None:
        self._guard("closing the parent run", self._finish, status)

    def _finish(self, client: MlflowClient, status: str) -> None:
        if self._parent_run_id is not None:
            client.set_terminated(self._parent_run_id, status=status)


def _log_batch(client: MlflowClient, run_id: str, *, params: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
    from mlflow.entities import Metric, Param

    now = int(time.time() * 1000)
    cleaned = redact_mapping(flatten(params))
    items = [Param(key[:250], _param_value(value)) for key, value in sorted(cleaned.items())]
    metric_items = [Metric(key[:250], float(value), now, 0) for key, value in sorted(metrics.items())]
    for start in range(0, max(len(items), 1), _MAX_PARAMS_PER_BATCH):
        batch_metrics = metric_items if start == 0 else []
        client.log_batch(run_id, metrics=batch_metrics, params=items[start : start + _MAX_PARAMS_PER_BATCH])


def _param_value(value: Any) -> str:
    text = "default" if value is None else str(value)
    return text[:_MAX_PARAM_CHARS]


def _clean_tags(tags: Mapping[str, Any]) -> dict[str, str]:
    return {key: str(value)[:5000] for key, value in redact_mapping(tags).items() if value is not None}


def _http_reachable(uri: str) -> bool:
    import httpx

    try:
        response = httpx.get(uri.rstrip("/") + "/health", timeout=3.0)
    except httpx.HTTPError:
        return False
    return response.status_code < 500


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:297] + "..."
