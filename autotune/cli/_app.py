"""The `autotune` typer app and its error console; each command module adds its commands to `app`."""

from __future__ import annotations

import sys
from collections.abc import Callable

import typer
from rich.console import Console
from rich.markup import escape

from autotune.errors import AutotuneError

app = typer.Typer(
    name="autotune",
    help="Benchmark and tune vLLM serving of vision-language models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err_console = Console(stderr=True)


@app.callback()
def _root() -> None:
    """Benchmark and tune vLLM serving of vision-language models."""
    # A root callback keeps typer in sub-command mode even while only one command is registered.


def run_reporting_errors(command: Callable[[], object]) -> None:
    """Run a typer app (or command); an AutotuneError is one red line on stderr and exit status 2, not a traceback."""
    try:
        command()
    except AutotuneError as exc:
        # escape(): messages may hold brackets (pip install -e '.[gpu]') that are not markup
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
