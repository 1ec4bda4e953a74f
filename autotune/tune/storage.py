"""Optuna storage: SQLite under the study folder by default, any RDB URL (PostgreSQL) for several workers.

Heartbeats are on: a worker that vanishes (another host, a killed container) has its RUNNING trial failed
after the grace period by the next worker to start a trial; on this host `recovery` does it at once.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial

from autotune.errors import ConfigError
from autotune.tune.redact import redact_url

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 15
GRACE_PERIOD_S = 60
_CREATE_ATTEMPTS = 5


def default_storage_url(study_dir: Path) -> str:
    return f"sqlite:///{(study_dir / 'optuna.db').resolve()}"


def make_storage(url: str, *, heartbeat: bool = True) -> RDBStorage:
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # The heartbeat thread and the trial write concurrently: wait for SQLite's lock instead of failing.
        engine_kwargs["connect_args"] = {"timeout": 60}
    else:
        engine_kwargs["pool_pre_ping"] = True
    last: Exception | None = None
    for attempt in range(_CREATE_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(
                    url,
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
    from autotune.tune.recovery import kill_left_server

    log.warning("trial %d failed: its worker stopped sending heartbeats", trial.number)
    kill_left_server(trial.user_attrs)


def study_exists(storage: RDBStorage, name: str) -> bool:
    try:
        storage.get_study_id_from_name(name)
    except KeyError:
        return False
    return True
