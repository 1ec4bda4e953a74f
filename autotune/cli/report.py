"""`autotune report`: a study's report (HTML or Markdown), or its trials' stack-profile table (`--stack-profiles`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from autotune.cli._app import app
from autotune.cli.console import make_console
from autotune.report.build import ReportFormat, write_report
from autotune.report.stack_profiles import write_stack_profiles

console = make_console()


@app.command()
def report(
    study: Annotated[str, typer.Argument(help="Study name; with --stack-profiles also a study or run folder")],
    experiments_dir: Annotated[Path, typer.Option("--experiments-dir", help="Folder holding the study folders")] = Path("experiments"),
    fmt: Annotated[list[ReportFormat] | None, typer.Option("--format", help="html (self-contained) or md (PNGs beside); repeatable")] = None,
    output: Annotated[Path | None, typer.Option("--output", help="Folder for the report (default: <study folder>/report)")] = None,
    storage: Annotated[str | None, typer.Option("--storage", help="Optuna RDB URL (default: the study folder's optuna.db)")] = None,
    stack_profiles: Annotated[
        bool,
        typer.Option(
            "--stack-profiles",
            help="Instead of the report: the engine core's and API servers' activity from the trials' stack profiles "
            "(stack_profiles.json and .md, into --output or the study or run folder)",
        ),
    ] = False,
) -> None:
    """Write a study's report: defaults vs best, Pareto front, history, importances, latency CDFs, GPU use."""
    if stack_profiles:
        _write_stack_profiles(study, experiments_dir, output)
        return
    outcome = write_report(study, experiments_dir=experiments_dir, formats=fmt, output_dir=output, storage=storage)
    if outcome.simulated:
        console.print("[bold yellow]SIMULATED engine: the report's figures are not GPU measurements[/]")
    for path in outcome.files:
        console.print(f"wrote {path}")


def _write_stack_profiles(study: str, experiments_dir: Path, output: Path | None) -> None:
    target = Path(study) if Path(study).is_dir() else experiments_dir / study
    outcome = write_stack_profiles(target, output_dir=output)
    typer.echo(outcome.markdown)
