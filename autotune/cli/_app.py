"""The `autotune` typer app and its error console; each command module adds its commands to `app`."""

from __future__ import annotations

import typer
from rich.console import Console

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
