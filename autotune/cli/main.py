"""The whole `autotune` command: every command module registered on one typer app (the `autotune` entry point).

Importing every command imports most of the package (the report's plotting, the load generator, the tuner); a
server start does not need that and runs `python -m autotune.cli.serve` instead (`autotune.cli.serve.main`).
"""

from __future__ import annotations

# Each command module adds its commands to `app` when imported: all of them, so that `autotune --help` lists them.
from autotune.cli import (  # noqa: F401
    bench,
    calibrate,
    dashboard,
    export,
    pack,
    report,
    serve,
    soak,
    summarize,
    tune,
    vllm_flags,
)
from autotune.cli._app import app, run_reporting_errors

__all__ = ["app", "main"]


def main() -> None:
    run_reporting_errors(app)
