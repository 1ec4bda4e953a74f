"""Optuna storage: SQLite under the study folder by default, any RDB URL (PostgreSQL) for several workers.

Heartbeats are on: a worker that vanishes (another host, a killed container) has its RUNNING trial failed
after the grace period by the next worker to start a trial; on this host `recovery` does it at once.

A database restart does not end a study: `ResilientRDBStorage` retries every storage call that failed for
want of a connection, with a bounded wait (`AUTOTUNE_STORAGE_RETRY_S`, default 120 s), and says so once per
outage. Past the wait the worker stops with one message (`StorageUnavailableError`); a SQLite file on a full
disk stops it at once (`OutOfSpaceError`, naming the folder).
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState

from autotune.errors import ConfigError
from autotune.tune.recovery import kill_left_server, worker_identity
from autotune.redact import redact_text, redact_url
from autotune.tune.stops import RESUME_HINT, StorageUnavailableError, free_text, out_of_space, out_of_space_error

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 15
GRACE_PERIOD_S = 60
STORAGE_RETRY_S = 120.0
STORAGE_RETRY_ENV = "AUTOTUNE_STORAGE_RETRY_S"
CONNECT_TIMEOUT_S = 10  # a database host that does not answer at all fails a connection attempt after this
_RETRY_DELAY_S = (0.25, 0.5, 1.0, 2.0)  # then every 2 s until the deadline
_CREATE_ATTEMPTS = 5
_RETRIED_METHODS = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr", "get_study_id_from_name",
    "get_study_name_from_id", "get_study_directions", "get_study_user_attrs", "get_study_system_attrs",
    "get_all_studies", "set_trial_param", "get_trial_id_from_study_id_trial_number",
    "get_trial_number_from_id", "get_trial_param", "set_trial_intermediate_value", "set_trial_user_attr",
    "set_trial_system_attr", "get_trial", "get_all_trials", "get_n_trials", "get_best_trial", "get_trial_params",
    "get_trial_user_attrs", "get_trial_system_attrs", "_get_stale_trial_ids",
    # Optuna's _CachedStorage (which every Study wraps an RDBStorage in) calls these private ones directly.
    "_set_trial_param", "_get_best_trial_id", "_get_trials",
)
CREATION_TOKEN = "autotune:creation_token"
"""System attribute of each trial this storage creates: a retried creation finds the trial an attempt committed."""


def default_storage_url(study_dir: Path) -> str:
    return f"sqlite:///{(study_dir / 'optuna.db').resolve()}"


def storage_retry_s() -> float:
    """How long a storage call waits for the database to come back; AUTOTUNE_STORAGE_RETRY_S overrides."""
    try:
        value = float(os.environ.get(STORAGE_RETRY_ENV, STORAGE_RETRY_S))
    except ValueError:
        raise ConfigError(f"{STORAGE_RETRY_ENV}: expected a number of seconds") from None
    if value < 0:
        raise ConfigError(f"{STORAGE_RETRY_ENV}: expected a number of seconds >= 0 (got {value:g})")
    return value


def _sqlite_file(url: str) -> Path | None:
    prefix = "sqlite:///"
    return Path(url[len(prefix) :].split("?", 1)[0]) if url.startswith(prefix) else None


def _connection_lost(exc: BaseException, sqlite: bool) -> bool:
    """Whether waiting may cure it: the database unreachable or restarting (SQLite: only its lock)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        if isinstance(current, sqlalchemy.exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)):
            return "database is locked" in str(current) if sqlite else True
        current = current.__cause__ or current.__context__
    return False


class ResilientRDBStorage(RDBStorage):
    """Optuna's RDBStorage that waits out a database restart instead of failing the study.

    Every storage call (the methods in `_RETRIED_METHODS`, trial creation, `set_trial_state_values`,
    `record_heartbeat`) that fails because the connection is gone is tried again with a growing delay until `retry_s` have passed;
    SQLAlchemy's `pool_pre_ping` replaces the pooled connections the restart killed. Only the outermost call of
    a thread retries (RDBStorage's methods call each other). Once one call has given up, every later call fails
    at once: the worker is stopping. A heartbeat that cannot be recorded is logged, never raised (it runs in
    Optuna's heartbeat thread, where an exception would print a traceback and end the beats).
    """

    def __init__(self, url: str, *, retry_s: float = STORAGE_RETRY_S, **kwargs: Any) -> None:
        self.retry_s = retry_s
        self.gave_up: StorageUnavailableError | None = None
        self._depth = threading.local()
        self._outage_lock = threading.Lock()
        self._outage_since: float | None = None
        super().__init__(url, **kwargs)
        self._shown_url = redact_url(url)
        self._sqlite_file = _sqlite_file(url)

    # -- the retry loop --------------------------------------------------------------------------

    def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if getattr(self._depth, "value", 0):
            return method(*args, **kwargs)  # nested in a call that retries as a whole
        self._depth.value = 1
        try:
            return self._retry(method, *args, **kwargs)
        finally:
            self._depth.value = 0

    def _retry(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.gave_up is not None:
            raise StorageUnavailableError(str(self.gave_up))
        deadline: float | None = None
        attempt = 0
        while True:
            try:
                result = method(*args, **kwargs)
            except Exception as exc:
                if self._sqlite_file is not None:
                    self._raise_sqlite_failure(exc)
                if not _connection_lost(exc, sqlite=self._sqlite_file is not None):
                    raise
                now = time.monotonic()
                deadline = deadline if deadline is not None else now + self.retry_s
                self._outage_started(exc)
                if now >= deadline:
                    self.gave_up = StorageUnavailableError(
                        f"storage {self._shown_url}: unreachable for {self.retry_s:g} s ({_first_line(exc)}): this "
                        f"worker stops; {RESUME_HINT} once the database is back ({STORAGE_RETRY_ENV} sets the wait)"
                    )
                    raise StorageUnavailableError(str(self.gave_up)) from None
                time.sleep(min(_RETRY_DELAY_S[min(attempt, len(_RETRY_DELAY_S) - 1)], max(0.0, deadline - now)))
                attempt += 1
                continue
            if attempt:
                self._outage_ended()
            return result

    def _raise_sqlite_failure(self, exc: BaseException) -> None:
        """A SQLite file that cannot be written stops the study with one message; returns for a lock (waited on)
        and for errors that are not the database's (an unknown study, a finished trial)."""
        assert self._sqlite_file is not None
        folder = self._sqlite_file.parent
        if out_of_space(exc):
            raise out_of_space_error(folder, exc, writing=self._sqlite_file.name) from None
        if _connection_lost(exc, sqlite=True) or not _connection_lost(exc, sqlite=False):
            return
        raise StorageUnavailableError(
            f"storage {self._shown_url}: {_first_line(exc)} ({free_text(folder)} in {folder}): this worker stops; "
            f"{RESUME_HINT} once the file can be written"
        ) from None

    def _outage_started(self, exc: BaseException) -> None:
        with self._outage_lock:
            if self._outage_since is not None:
                return
            self._outage_since = time.monotonic()
        log.warning(
            "storage %s unreachable (%s): waiting up to %g s for it to come back", self._shown_url, _first_line(exc),
            self.retry_s,
        )

    def _outage_ended(self) -> None:
        with self._outage_lock:
            since, self._outage_since = self._outage_since, None
        if since is not None:
            log.warning("storage %s reachable again after %.1f s; the study goes on", self._shown_url, time.monotonic() - since)

    # -- calls that need more than a retry --------------------------------------------------------

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Sequence[float] | None = None) -> bool:
        attempts = 0

        def attempt() -> bool:
            nonlocal attempts
            attempts += 1
            try:
                return RDBStorage.set_trial_state_values(self, trial_id, state, values)
            except optuna.exceptions.UpdateFinishedTrialError:
                # An earlier attempt committed, then lost its connection before the answer came back.
                if attempts > 1 and state.is_finished() and RDBStorage.get_trial(self, trial_id).state is state:
                    return True
                raise

        return bool(self._call(attempt))

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        return self._create_new_trial(study_id, template_trial)._trial_id

    def _create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> FrozenTrial:
        """A trial created once, however often the call is tried: an attempt whose commit reached the database but
        whose answer did not (the connection closed in between) left a RUNNING trial no worker knew of, which stayed
        RUNNING for good (no heartbeat, no worker). Each creation carries a token; a retry first looks for it.
        A RUNNING trial is born with its worker's identity, so that a worker dying before its objective wrote it
        (one that gives up on the database right after a creation whose answer was lost) leaves a trial that the
        next resume recognizes as its dead worker's (`recover_dead_workers`) instead of one RUNNING for good."""
        token = uuid.uuid4().hex
        template = _with_token(template_trial, token)
        attempts = 0

        def attempt() -> FrozenTrial:
            nonlocal attempts
            attempts += 1
            if attempts > 1:
                committed = self._trial_with_token(study_id, token)
                if committed is not None:
                    return committed
            return RDBStorage._create_new_trial(self, study_id, template)

        return self._call(attempt)

    def _trial_with_token(self, study_id: int, token: str) -> FrozenTrial | None:
        with _create_scoped_session(self.scoped_session) as session:
            trial_id = (
                session.query(models.TrialSystemAttributeModel.trial_id)
                .join(models.TrialModel, models.TrialModel.trial_id == models.TrialSystemAttributeModel.trial_id)
                .filter(models.TrialModel.study_id == study_id)
                .filter(models.TrialSystemAttributeModel.key == CREATION_TOKEN)
                .filter(models.TrialSystemAttributeModel.value_json == json.dumps(token))
                .scalar()
            )
        return None if trial_id is None else RDBStorage.get_trial(self, trial_id)

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self._call(RDBStorage.record_heartbeat, self, trial_id)
        except Exception as exc:  # noqa: BLE001 - a missed beat is covered by the grace period
            log.warning("heartbeat of trial id %d not recorded: %s", trial_id, _first_line(exc))


def _retrying(name: str) -> Callable[..., Any]:
    plain = getattr(RDBStorage, name)

    @functools.wraps(plain)
    def call(self: ResilientRDBStorage, *args: Any, **kwargs: Any) -> Any:
        return self._call(plain, self, *args, **kwargs)

    return call


for _name in _RETRIED_METHODS:
    setattr(ResilientRDBStorage, _name, _retrying(_name))


def _with_token(template_trial: FrozenTrial | None, token: str) -> FrozenTrial:
    """The template of a new trial (a plain RUNNING one when Optuna gives none) with the creation token added, and
    the worker's identity when it is created RUNNING (a WAITING one is run by whichever worker takes it)."""
    if template_trial is None:
        template = FrozenTrial(
            number=-1, state=TrialState.RUNNING, value=None, values=None, datetime_start=datetime.now(),
            datetime_complete=None, params={}, distributions={}, user_attrs={}, system_attrs={},
            intermediate_values={}, trial_id=-1,
        )
    else:
        template = copy.deepcopy(template_trial)
    template.system_attrs[CREATION_TOKEN] = token
    if template.state is TrialState.RUNNING:
        template.user_attrs = {**worker_identity(), **template.user_attrs}
    return template


def _first_line(exc: BaseException) -> str:
    """The driver's own words (psycopg2's, sqlite3's) when there are some: SQLAlchemy wraps them."""
    cause = exc.__cause__ or exc
    cause = getattr(cause, "orig", None) or cause
    text = redact_text(f"{type(cause).__name__}: {cause}".splitlines()[0])
    return text if len(text) <= 300 else text[:297] + "..."


def make_storage(url: str, *, heartbeat: bool = True, retry_s: float | None = None) -> ResilientRDBStorage:
    """The study's storage; `retry_s` None: `storage_retry_s()` (AUTOTUNE_STORAGE_RETRY_S or 120 s)."""
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # The heartbeat thread and the trial write concurrently: wait for SQLite's lock instead of failing.
        engine_kwargs["connect_args"] = {"timeout": 60}
    else:
        engine_kwargs["pool_pre_ping"] = True  # connections a database restart killed are replaced, not used
        if url.startswith("postgresql"):
            engine_kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    wait_s = storage_retry_s() if retry_s is None else retry_s
    last: Exception | None = None
    for attempt in range(_CREATE_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return ResilientRDBStorage(
                    url,
                    retry_s=wait_s,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=HEARTBEAT_INTERVAL_S if heartbeat else None,
                    grace_period=GRACE_PERIOD_S if heartbeat else None,
                    heartbeat_stale_trial_callback=_stale_trial_callback if heartbeat else None,
                )
        except ImportError as exc:
            raise ConfigError(f"storage {redact_url(url)}: missing database driver ({exc})") from None
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError) as exc:
            # Workers starting together on a fresh database race to create its tables: try again.
            last = exc
            time.sleep(0.2 * (attempt + 1))
        except Exception as exc:  # sqlalchemy errors: bad URL, unknown dialect
            last = exc
            break
    assert last is not None
    message = f"storage {redact_url(url)}: {type(last).__name__}: {last}".replace(url, redact_url(url))
    raise ConfigError(message.splitlines()[0] if len(message) > 600 else message)


def _stale_trial_callback(study: optuna.Study, trial: FrozenTrial) -> None:
    """Optuna failed a trial whose worker stopped beating: kill the server it left if it is on this host."""
    log.warning("trial %d failed: its worker stopped sending heartbeats", trial.number)
    kill_left_server(trial.user_attrs)


def study_exists(storage: RDBStorage, name: str) -> bool:
    try:
        storage.get_study_id_from_name(name)
    except KeyError:
        return False
    return True
