"""MLflow tracking: one parent run per study, one nested run per trial. The only module importing mlflow.

Default store: `sqlite:///<experiments>/<study>/mlflow.db`, artifacts under `<experiments>/<study>/mlartifacts`;
any tracking URI (an MLflow server) may be given instead. MLflow being unreachable never stops a study:
every call here returns None after logging a warning, and `autotune sync-mlflow` logs what is missing later.
A trial is logged once, also with several worker processes: its run is looked up by the tags (study, trial
number) before one is created, and after logging the run looks again: when two processes created one each,
every process keeps the same one (a finished run first, then the earliest) and a loser deletes its own.
Nothing printed here holds the tracking URI's password: MLflow's "View run at URL" lines are switched off
and messages from MLflow's loggers and exceptions pass through `redact_text`.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from autotune.redact import redact_mapping, redact_text, redact_url

if TYPE_CHECKING:
    from mlflow.entities import Run
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
        # MLflow prints "View run ... at http://user:PASSWORD@host/..." to stdout after each run otherwise.
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
        try:
            from mlflow.tracking import MlflowClient

            install_log_redaction()  # after the import: MLflow sets up its handler then

            # Workers starting together on a new SQLite store would race MLflow's schema migration
            # ("Online migration expected to match one row"): create the store and experiment one at a time.
            with self._creation_lock():
                client = MlflowClient(tracking_uri=self.tracking_uri)
                self._experiment_id = self._experiment(client)
        except Exception as exc:  # noqa: BLE001 - any MLflow failure degrades to "not synced"
            self._reachable = False
            log.warning("MLflow at %s failed (%s): the study goes on unsynced", self.shown_uri, _short(exc))
            return None
        self._client = client
        self._reachable = True
        return client

    def _experiment(self, client: MlflowClient) -> str:
        """The experiment's id, created when missing. A remote store gets no creation lock: when another worker
        created it first, creating fails and the lookup then finds theirs."""
        experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
        if experiment is not None:
            return str(experiment.experiment_id)
        location = self.artifact_dir.resolve().as_uri() if self.artifact_dir is not None else None
        try:
            return str(client.create_experiment(EXPERIMENT_NAME, artifact_location=location))
        except Exception:
            experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
            if experiment is None:
                raise
            return str(experiment.experiment_id)

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
        with self._creation_lock():
            found = client.search_runs([self._experiment_id or "0"], filter_string=self._study_filter(), max_results=50)
            created = None
            if not found:
                created = client.create_run(
                    self._experiment_id or "0",
                    run_name=f"study-{self.study}",
                    tags={**_clean_tags(tags), TAG_STUDY: self.study, TAG_ROLE: "study"},
                ).info.run_id
        if created is None:
            run_id = _kept_run(found)
            client.update_run(run_id, status="RUNNING")
        else:
            run_id = created
            _log_batch(client, run_id, params=params, metrics={})
            run_id = self._keep_one(client, self._study_filter(), run_id)
        self._parent_run_id = run_id
        return run_id

    @contextlib.contextmanager
    def _creation_lock(self) -> Iterator[None]:
        """Serializes "look up, else create" across processes for a local SQLite store (an flock on a file
        next to the database). Remote stores get no lock; `_keep_one` settles duplicates there."""
        path = _sqlite_path(self.tracking_uri)
        if path is None:
            yield
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(path.name + ".autotune-lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _study_filter(self) -> str:
        return f"tags.`{TAG_STUDY}` = '{self.study}' and tags.`{TAG_ROLE}` = 'study'"

    def _trial_filter(self, number: int) -> str:
        return f"tags.`{TAG_STUDY}` = '{self.study}' and tags.`{TAG_ROLE}` = 'trial' and tags.`{TAG_TRIAL}` = '{number}'"

    def _keep_one(self, client: MlflowClient, filter_string: str, mine: str) -> str:
        """Another process may have created the same run meanwhile: all agree on one, a loser deletes its own.

        The kept run: a terminated one first (it was kept by its creator already), then the earliest started
        (run id breaks ties). Returns the kept run's id.
        """
        found = client.search_runs([self._experiment_id or "0"], filter_string=filter_string, max_results=50)
        if len(found) <= 1:
            return mine
        kept = _kept_run(found)
        if kept != mine:
            log.info("MLflow: run %s duplicated run %s (another worker); deleted", mine, kept)
            client.delete_run(mine)
        return kept

    def log_trial(self, record: TrialRecord) -> str | None:
        """One nested run for a finished trial; logged once (a complete run is returned as is, one left RUNNING by an
        attempt that lost MLflow midway is completed)."""
        return self._guard(f"trial {record.number}", self._log_trial, record)

    def _log_trial(self, client: MlflowClient, record: TrialRecord) -> str:
        parent = self._parent_run_id or self._start_study(client, {}, {})
        tags = {
            **_clean_tags(record.tags),
            TAG_STUDY: self.study,
            TAG_ROLE: "trial",
            TAG_TRIAL: str(record.number),
            "trial_state": record.state,
            "mlflow.parentRunId": parent,
        }
        with self._creation_lock():  # look up and create as one step (processes sharing a SQLite store)
            existing = self._trial_run(client, record.number)
            if existing is not None and existing.info.status != "RUNNING":
                return str(existing.info.run_id)
            if existing is not None:
                # An earlier attempt created the run, then lost MLflow (a restart, a cut) before closing it:
                # complete that run rather than add a second one (its worker has finished with it: the trial is
                # finished in Optuna only after its worker's attempt returned).
                run_id = str(existing.info.run_id)
            else:
                run_id = client.create_run(self._experiment_id or "0", run_name=f"trial-{record.number}", tags=tags).info.run_id
        _log_batch(client, run_id, params=record.params, metrics=record.metrics)
        for path in record.artifacts:
            if path.is_file():
                client.log_artifact(run_id, str(path))
        kept = self._keep_one(client, self._trial_filter(record.number), run_id)
        if kept != run_id:
            return kept
        client.set_terminated(run_id, status="FINISHED" if record.state == "COMPLETE" else "FAILED")
        return run_id

    def _trial_run(self, client: MlflowClient, number: int) -> Run | None:
        found = client.search_runs([self._experiment_id or "0"], filter_string=self._trial_filter(number), max_results=50)
        if not found:
            return None
        kept = _kept_run(found)
        return next(run for run in found if run.info.run_id == kept)

    def logged_trials(self) -> set[int] | None:
        """Trial numbers whose run is complete (terminated); None when MLflow is unreachable. A run left RUNNING by
        an attempt that lost MLflow midway is not counted: `log_trial` completes it."""
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
            numbers.update(
                int(run.data.tags[TAG_TRIAL]) for run in page if TAG_TRIAL in run.data.tags and run.info.status != "RUNNING"
            )
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


def _sqlite_path(uri: str) -> Path | None:
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    path = Path(uri[len(prefix) :].split("?", 1)[0])
    return path if path.parent.is_dir() else None


def _kept_run(runs: Iterable[Any]) -> str:
    """Of duplicate runs, the one every process keeps: a terminated one, else the earliest started."""
    ordered = sorted(runs, key=lambda run: (run.info.status == "RUNNING", run.info.start_time or 0, run.info.run_id))
    return str(ordered[0].info.run_id)


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
    from urllib.parse import unquote, urlsplit, urlunsplit

    import httpx

    parts = urlsplit(uri)
    auth = None
    if parts.username is not None or parts.password is not None:  # credentials apart: httpx logs the URL
        auth = httpx.BasicAuth(unquote(parts.username or ""), unquote(parts.password or ""))
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        parts = parts._replace(netloc=netloc + (f":{parts.port}" if parts.port else ""))
    try:
        response = httpx.get(urlunsplit(parts).rstrip("/") + "/health", timeout=3.0, auth=auth)
    except httpx.HTTPError:
        return False
    return response.status_code < 500


def _short(exc: BaseException) -> str:
    text = redact_text(f"{type(exc).__name__}: {exc}")
    return text if len(text) <= 300 else text[:297] + "..."


class RedactingFilter(logging.Filter):
    """Masks URL passwords in a record's message (MLflow's loggers quote tracking URIs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact_text(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def install_log_redaction() -> None:
    """Once per process: records reaching MLflow's handler or the root handlers lose URL passwords.

    Filters go on handlers: a logger's own filters do not apply to records of its child loggers.
    """
    for logger in (logging.getLogger("mlflow"), logging.getLogger()):
        for handler in logger.handlers:
            if not any(isinstance(item, RedactingFilter) for item in handler.filters):
                handler.addFilter(RedactingFilter())
