"""`autotune limits CONFIG.yaml --out DIR`: the limit table of a tuned config on this host's GPU.

    autotune limits experiments/STUDY/best.yaml --out experiments/limits/RUN [--requests 2048] [--workload vlm-chat]

Runs vLLM's offline engine with the config (one engine core, in this process) through the phases of
`autotune.limits.phases` and writes DIR/limits.json (`LimitRecord`) and DIR/limits.md (the table). Needs vLLM (the
`gpu` extra) and a GPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from autotune.cli._app import app
from autotune.limits.measure import measure_limits
from autotune.limits.record import limits_table


@app.command()
def limits(
    config: Annotated[Path, typer.Argument(help="A tuned config (best.yaml, or one of experiments/gpu-configs)")],
    out: Annotated[Path, typer.Option("--out", help="Folder for limits.json and limits.md")],
    requests: Annotated[int, typer.Option(
        "--requests", min=8, max=100_000,
        help="Requests in each phase (256 lasted 1-4 s a phase on an H100: ramp and drain weigh, few GPM intervals)",
    )] = 2048,
    workload: Annotated[str, typer.Option("--workload", help="Built-in synthetic workload or YAML file")] = "vlm-chat",
    model: Annotated[str | None, typer.Option("--model", help="Model folder instead of the config's")] = None,
) -> None:
    """What the GPU sustains without the serving front end: vLLM's offline engine on the workload, phase by phase."""
    record = measure_limits(config, requests=requests, workload=workload, model=model, progress=typer.echo)
    out.mkdir(parents=True, exist_ok=True)
    (out / "limits.json").write_text(record.model_dump_json(indent=1))
    table = limits_table(record)
    (out / "limits.md").write_text(table)
    typer.echo(table)
    typer.echo(f"{out / 'limits.json'}, {out / 'limits.md'}")
