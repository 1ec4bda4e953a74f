"""`autotune summarize run|reference|headline|measurements|screening|reliability`: summaries of recorded runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from autotune.cli._app import app
from autotune.report.reliability_table import load_outcomes, render, write_table
from autotune.report.runs.headline import build_headline
from autotune.report.runs.measurements import (
    summarize_measurements as measurements_lines,
)
from autotune.report.runs.reference import (
    summarize_reference as write_reference_summary,
)
from autotune.report.runs.study_run import summarize_study_run
from autotune.report.screening import describe, savings_record, study_screening_savings
from autotune.report.trial_cost import summarize_trial_cost

summarize_app = typer.Typer(
    help="Summaries computed from the raw files of recorded runs (experiments/).", no_args_is_help=True
)
app.add_typer(summarize_app, name="summarize")

RunDir = Annotated[Path, typer.Argument(metavar="RUN_DIR", help="The run folder (measurements/, study/)")]


def _print_goodput(summary: dict, written: Path, root: Path) -> None:
    typer.echo(f"wrote {written}, {root / 'tables.md'}, {root / 'plots'}/")
    typer.echo(f"slo_rate defaults {summary['default_goodput_rps']} vs best {summary['best_goodput_rps']} "
               f"(x{summary['best_vs_default']}); median trial {summary['median_trial_s']} s")


@summarize_app.command("run")
def summarize_run(
    root: RunDir,
    study: Annotated[
        list[str] | None,
        typer.Option("--study", help="The study's name; repeatable: the first present is summarized "
                     "[default: qwen3-vl-4b-reference, qwen3-vl-4b-reference-v2]"),
    ] = None,
    tp_study: Annotated[str, typer.Option("--tp-study", help="The tensor-parallel grid's study, where the run has one")] = "qwen3-vl-4b-tp",
    overhead_note: Annotated[
        str, typer.Option("--overhead-note", help="What the summary says of the serving overhead, which a study run does not measure")
    ] = "not measured in this run",
) -> None:
    """A study run (scripts/gpu/reference.sh agree | wait | tp): summary.json, tables.md, load_windows.csv, plots/."""
    studies = study or ["qwen3-vl-4b-reference", "qwen3-vl-4b-reference-v2"]
    summary = summarize_study_run(root, studies, tp_study, overhead_note)
    _print_goodput(summary, root / "summary.json", root)


@summarize_app.command("reference")
def summarize_reference(
    root: RunDir,
    summary_name: Annotated[str, typer.Option("--summary-name", help="The summary's file name in RUN_DIR")] = "summary.json",
    study: Annotated[str, typer.Option("--study", help="The study of step b")] = "h100-qwen3-vl-4b",
    tp_study: Annotated[str, typer.Option("--tp-study", help="The two-GPU study, where the run has one")] = "qwen3-vl-4b-2gpu",
) -> None:
    """A reference run (scripts/gpu/reference.sh a|b|c): the summary, tables.md and plots/."""
    summary = write_reference_summary(root, summary_name, study, tp_study)
    _print_goodput(summary, root / summary_name, root)


@summarize_app.command("headline")
def summarize_headline(
    root: Annotated[Path, typer.Argument(metavar="EXPERIMENT_DIR", help="The experiment folder holding the dated runs")],
    run: Annotated[Path | None, typer.Option("--run", help="The dated run folder to take goodput from (default: the latest confirmed)")] = None,
    sustained: Annotated[Path | None, typer.Option("--sustained", help="The sustained run folder (default: the latest under --sustained-root)")] = None,
    sustained_root: Annotated[Path, typer.Option("--sustained-root", help="The folder of the sustained runs")] = Path("experiments/sustained"),
    study: Annotated[
        list[str] | None,
        typer.Option("--study", help="A name the runs' main study may have; repeatable "
                     "[default: qwen3-vl-4b-reference, qwen3-vl-4b-reference-v2]"),
    ] = None,
) -> None:
    """The headline of an experiment folder over its dated runs: EXPERIMENT_DIR/summary.json."""
    headline = build_headline(root, run, study or ["qwen3-vl-4b-reference", "qwen3-vl-4b-reference-v2"], sustained_root, sustained)
    (root / "summary.json").write_text(json.dumps(headline, indent=1) + "\n")
    typer.echo(f"wrote {root / 'summary.json'}: defaults {headline['default_goodput_rps']} vs best "
               f"{'>= ' if headline['best_goodput_is_lower_bound'] else ''}{headline['best_goodput_rps']} req/s "
               f"(x{headline['best_vs_default']}), GPU util best {headline['gpu_util_mean_best']}%, "
               f"median trial {headline['median_trial_s']} s")


@summarize_app.command("measurements")
def summarize_measurements(
    root: Annotated[Path, typer.Argument(metavar="MEASUREMENTS_DIR", help="A folder of device commands' outputs, one sub-folder each")],
) -> None:
    """Side-by-side GPU runs (experiments/gpu-runs/measurements): summary.json there, a Markdown table here."""
    for line in measurements_lines(root):
        typer.echo(line)


@summarize_app.command("screening")
def summarize_screening(
    study_dir: Annotated[Path, typer.Argument(metavar="STUDY_DIR", help="A finished GPU study's folder (optuna.db or optuna.db.xz)")],
    profiles: Annotated[list[Path], typer.Argument(metavar="PROFILE.json...", help="Simulator profiles to predict with")],
    within: Annotated[float, typer.Option("--within", help="Percent of the best a trial must reach")] = 5.0,
    output: Annotated[Path | None, typer.Option("--output", help="Write the figures as JSON here too")] = None,
) -> None:
    """What screening with the simulated engine would have saved on a finished GPU study (simulated predictions)."""
    found = study_screening_savings(study_dir, profiles, within)
    for path, savings in found:
        typer.echo(describe(path, savings, within))
    if output:
        output.write_text(json.dumps(savings_record(study_dir, found), indent=1) + "\n")


@summarize_app.command("reliability")
def summarize_reliability(
    folder: Annotated[Path, typer.Argument(help="The outcomes the reliability tests recorded")] = Path("experiments/reliability"),
    document: Annotated[Path, typer.Argument(help="The document whose table (between its markers) is replaced")] = Path("docs/reliability.md"),
) -> None:
    """The reliability table of docs/reliability.md (or README.md) from the outcomes the tests recorded."""
    write_table(document, render(load_outcomes(folder)))
    typer.echo(f"{document}: table of {folder}")


@summarize_app.command("trial-cost")
def summarize_trial_cost_command(
    study_dir: Annotated[Path, typer.Argument(metavar="STUDY_DIR", help="A study's folder (optuna.db or optuna.db.xz)")],
    gpus: Annotated[int, typer.Option("--gpus", min=1, help="GPUs the study ran on (one worker each)")] = 1,
    output: Annotated[Path | None, typer.Option("--output", help="Write the summary as JSON here too")] = None,
) -> None:
    """What the study's trials cost: wall time, median trial, median of each start phase (issue 17's summary.json)."""
    summary = summarize_trial_cost(study_dir, gpus=gpus)
    text = summary.model_dump_json(indent=1)
    typer.echo(text)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text + "\n")
