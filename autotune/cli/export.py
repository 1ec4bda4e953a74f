"""`autotune export BEST.yaml --to vllm|k8s`: a tuned config in a form that runs without `autotune tune`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.markup import escape

from autotune.cli._app import app
from autotune.config import load_tuned_config
from autotune.deploy.k8s_export import default_name, k8s_manifests, write_k8s_export
from autotune.deploy.vllm_export import export_vllm, write_vllm_export

console = Console()


@app.command()
def export(
    config: Annotated[Path, typer.Argument(metavar="BEST.yaml", help="A tuned config (best.yaml of a study)")],
    to: Annotated[Literal["vllm", "k8s"], typer.Option("--to", help="vllm: serve.sh + vllm-config.yaml for raw vLLM 0.24; "
                                                      "k8s: a Deployment and Service running `autotune serve`")],
    out: Annotated[Path | None, typer.Option("--out", help="Folder to write to (default: BEST.yaml's folder/export-TO)")] = None,
    model: Annotated[str | None, typer.Option("--model", help="The model where it is served (path or hub id); default: the config's")] = None,
    image: Annotated[str, typer.Option("--image", help="k8s: the autotune image (the repository's Dockerfile)")] = "autotune:latest",
    name: Annotated[str | None, typer.Option("--name", help="k8s: Deployment and Service name (default: from the served model name)")] = None,
    models_pvc: Annotated[
        str | None, typer.Option("--models-pvc", help="k8s: a PersistentVolumeClaim with the weights, mounted read-only at /models")
    ] = None,
) -> None:
    """Write a tuned config for raw vLLM (a `vllm serve` command line and a --config file) or for Kubernetes."""
    tuned = load_tuned_config(config)
    folder = out or config.parent / f"export-{to}"
    if to == "vllm":
        exported = export_vllm(tuned, model=model)
        paths = write_vllm_export(exported, tuned, folder, source=config.name)
        for item in exported.unexpressible:
            style = "bold yellow" if item.setting.startswith("engine_config") else "yellow"
            console.print(f"[{style}]not in raw vLLM:[/] {item.setting} = {item.value}: needs {escape(item.needs)}", soft_wrap=True)
        for note in exported.notes:
            console.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
        if exported.required_env:
            console.print(f"set first: {', '.join(exported.required_env)}")
        console.print(" ".join(exported.argv), markup=False, highlight=False, soft_wrap=True)
    else:
        manifests = k8s_manifests(tuned, name=name or default_name(tuned), image=image, model=model, models_pvc=models_pvc)
        origin = f"study {tuned.provenance.study}, trial {tuned.provenance.trial_number}"
        header = [f"`autotune serve --config` on {config.name} ({origin}), written by `autotune export --to k8s`.",
                  "Apply: kubectl apply -f k8s.yaml   (valid against the Kubernetes schemas when written)"]
        if tuned.serving.api_key is not None:
            header.append(f"It serves with an API key: kubectl create secret generic {manifests[1]['metadata']['name']}-api-key "
                          "--from-literal=API_KEY=...")
        paths = [write_k8s_export(manifests, folder, header)]
    for path in paths:
        console.print(f"wrote {path}")
