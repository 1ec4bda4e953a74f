"""The `autotune` command: parse arguments into models, call the library, print. No logic here."""

from __future__ import annotations

import sys

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


def _register_commands() -> None:
    # Each module adds its commands to `app`; imported here so that `autotune --help` lists them all.
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


def main() -> None:
    _register_commands()
    try:
        app()
    except AutotuneError as exc:
        # escape(): messages may hold brackets (pip install -e '.[gpu]') that are not markup
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
