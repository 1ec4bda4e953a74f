"""`autotune report`: a study's report (HTML or Markdown)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from autotune.cli._app import app
from autotune.cli.console import make_console
from autotune.report.build import ReportFormat, write_report

console = make_console()


@app.command()
def report(
    study: Annotated[str, typer.Argument(help="Study name")],
    experiments_dir: Annotated[Path, typer.Option("--experiments-dir", help="Folder holding the study folders")] = Path("experiments"),
    fmt: Annotated[list[ReportFormat] | None, typer.Option("--format", help="html (self-contained) or md (PNGs beside); repeatable")] = None,
    output: Annotated[Path | None, typer.Option("--output", help="Folder for the report (default: <study folder>/report)")] = None,
    storage: Annotated[str | None, typer.Option("--storage", help="Optuna RDB URL (default: the study folder's optuna.db)")] = None,
) -> None:
    """Write a study's report: defaults vs best, Pareto front, history, importances, latency CDFs, GPU use."""
    outcome = write_report(study, experiments_dir=experiments_dir, formats=fmt, output_dir=output, storage=storage)
    if outcome.simulated:
        console.print("[bold yellow]SIMULATED engine: the report's figures are not GPU measurements[/]")
    for path in outcome.files:
        console.print(f"wrote {path}")
