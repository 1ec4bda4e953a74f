"""`autotune pack FOLDER...`: a run folder under experiments/ in the form the repository keeps."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from autotune.cli._app import app
from autotune.errors import AutotuneError
from autotune.report.pack import pack_folder


@app.command()
def pack(
    folders: Annotated[list[Path], typer.Argument(metavar="FOLDER...", help="Run folders under experiments/ (or parts of one)")],
    export_store: Annotated[
        list[str] | None,
        typer.Option("--export-store", metavar="STUDY", help="A study whose Optuna store nothing resumes from: export its trials, drop the store"),
    ] = None,
) -> None:
    """Pack run folders before they are committed: no MLflow stores, compressed stores, results, logs and profiles."""
    for folder in folders:
        if not folder.is_dir():
            raise AutotuneError(f"{folder}: no such folder")
    for folder in folders:
        (size, count), (new_size, new_count) = pack_folder(folder, set(export_store or []))
        typer.echo(f"{folder}: {size / 1e6:.2f} MB in {count} files -> {new_size / 1e6:.2f} MB in {new_count} files")
