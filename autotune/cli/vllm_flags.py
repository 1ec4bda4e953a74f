"""`autotune vllm-flags VLLM`: the long options `vllm serve` accepts, read from vLLM's source (no GPU, no torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from autotune.cli._app import app
from autotune.deploy.vllm_flags_source import flags_listing


@app.command("vllm-flags")
def vllm_flags(
    location: Annotated[Path, typer.Argument(metavar="VLLM_WHEEL_OR_SOURCE", help="A vLLM wheel, or a folder holding the `vllm` package")],
) -> None:
    """Print the list `autotune export --to vllm` checks options against (autotune/deploy/vllm_serve_flags/)."""
    typer.echo(flags_listing(location), nl=False)
