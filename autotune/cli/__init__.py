"""The `autotune` command: parse arguments into models, call the library, print. No logic here."""

from __future__ import annotations

import sys

from rich.markup import escape

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
from autotune.cli._app import app, err_console
from autotune.errors import AutotuneError

__all__ = ["app", "main"]


def main() -> None:
    try:
        app()
    except AutotuneError as exc:
        # escape(): messages may hold brackets (pip install -e '.[gpu]') that are not markup
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
