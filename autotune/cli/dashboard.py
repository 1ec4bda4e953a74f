"""`autotune dashboard`: watch a study live in optuna-dashboard, with the MLflow UI command beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from autotune.cli._app import app
from autotune.tune.dashboard import dashboard_target, run_dashboard


@app.command()
def dashboard(
    study: Annotated[str, typer.Argument(help="Study name")],
    experiments_dir: Annotated[
        Path, typer.Option("--experiments-dir", help="Folder holding one sub-folder per study")
    ] = Path("experiments"),
    storage: Annotated[
        str | None, typer.Option("--storage", help="Optuna RDB URL (default: SQLite in the study folder)")
    ] = None,
    mlflow_uri: Annotated[
        str | None, typer.Option("--mlflow-uri", help="MLflow tracking URI (default: SQLite in the study folder)")
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="0 picks a free port (printed)")] = 8080,
) -> None:
    """Serve optuna-dashboard over a study's storage (trials appear as `autotune tune` records them)."""
    target = dashboard_target(study, experiments_dir=experiments_dir, storage=storage, mlflow_uri=mlflow_uri)
    run_dashboard(target, host=host, port=port, announce=lambda line: print(line, flush=True))
