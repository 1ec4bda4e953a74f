"""The whole `autotune` command: the command modules registered on one typer app (the `autotune` entry point).

Importing every command imports most of the package (the report's plotting, the load generator, the tuner, the
server): 3.7 s of CPU on a CI core. `main()` imports only the module of the command named on the command line (every
module for `--help`, no command or an unknown one, so that typer lists them all). `app` imported from here, as tests
and `CliRunner` do, has every command. A server start runs `python -m autotune.cli.serve` (`autotune.cli.serve.main`).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from autotune.cli._app import run_reporting_errors

__all__ = ["COMMAND_MODULES", "app", "main"]

# Each module adds its commands to `_app.app` when imported (tests/project check this table against the app).
COMMAND_MODULES: dict[str, str] = {
    "bench": "bench",
    "calibrate": "calibrate",
    "dashboard": "dashboard",
    "export": "export",
    "limits": "limits",
    "pack": "pack",
    "report": "report",
    "serve": "serve",
    "soak": "soak",
    "soak-progress": "soak",
    "summarize": "summarize",
    "tune": "tune",
    "best": "tune",
    "trials": "tune",
    "sync-mlflow": "tune",
    "vllm-flags": "vllm_flags",
}


def load_commands(argv: list[str] | None = None) -> Any:
    """The typer app with the commands `argv` needs (all when `argv` is None or names none we know)."""
    name = next((arg for arg in argv if not arg.startswith("-")), None) if argv is not None else None
    modules = [COMMAND_MODULES[name]] if name in COMMAND_MODULES else sorted(set(COMMAND_MODULES.values()))
    for module in modules:
        importlib.import_module(f"autotune.cli.{module}")
    from autotune.cli._app import app

    return app


def __getattr__(name: str) -> Any:
    if name == "app":  # `from autotune.cli.main import app`: every command
        return load_commands()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    run_reporting_errors(load_commands(sys.argv[1:]))
