"""`autotune dashboard STUDY`: optuna-dashboard over a study's storage, to watch trials arrive while it runs.

The storage is found the way `best`, `trials` and `report` find it (`reopen_study`: the study folder's
`optuna.db`, or `--storage URL`), and opened read-mostly without heartbeats, so the dashboard never fails a
trial that a tuner is running. optuna-dashboard's WSGI app runs on a threaded `wsgiref` server bound before
the URL is printed (`--port 0` prints the port it got). The MLflow UI over the same study's runs is printed
beside it as a command: MLflow's server is a process of its own.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from autotune.tracking import default_tracking_uri
from autotune.redact import redact_url
from autotune.tune.session import reopen_study
from autotune.tune.storage import make_storage

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DashboardTarget:
    study: str
    study_id: int
    storage_url: str
    mlflow_uri: str


def dashboard_target(
    study: str, *, experiments_dir: Path, storage: str | None = None, mlflow_uri: str | None = None
) -> DashboardTarget:
    """The study's storage (it must exist and hold the study) and its MLflow tracking URI."""
    session = reopen_study(study, experiments_dir=experiments_dir, storage=storage, mlflow=False)
    return DashboardTarget(
        study=study,
        study_id=session.study._study_id,
        storage_url=session.storage_url,
        mlflow_uri=mlflow_uri or default_tracking_uri(session.study_dir),
    )


def mlflow_ui_command(mlflow_uri: str, host: str, port: int = 5000) -> str:
    return shlex.join(["mlflow", "ui", "--backend-store-uri", mlflow_uri, "--host", host, "--port", str(port)])


class _ThreadedServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        log.debug("%s " + format, self.address_string(), *args)


def run_dashboard(target: DashboardTarget, *, host: str, port: int, announce: Callable[[str], None]) -> None:
    """Serve optuna-dashboard until interrupted; `announce` gets the lines to print once it listens."""
    from optuna_dashboard import wsgi

    app = wsgi(make_storage(target.storage_url, heartbeat=False))
    with make_server(host, port, app, server_class=_ThreadedServer, handler_class=_QuietHandler) as server:
        shown = f"[{host}]" if ":" in host else host
        announce(f"optuna-dashboard: http://{shown}:{server.server_port}/dashboard/studies/{target.study_id}")
        announce(f"  study {target.study!r} in {redact_url(target.storage_url)}; Ctrl-C stops it")
        announce(f"MLflow UI (another terminal): {mlflow_ui_command(target.mlflow_uri, host)}")
        try:
            server.serve_forever(poll_interval=0.5)
        except KeyboardInterrupt:
            pass
