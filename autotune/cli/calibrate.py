"""`autotune calibrate`: fit the simulator profile to GPU results, write a calibrated profile and a report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from autotune.calibrate.output import write_profile
from autotune.calibrate.report import check_report_path, rich_table, write_report
from autotune.calibrate.run import CalibrationSettings
from autotune.calibrate.run import calibrate as run_calibration
from autotune.cli._app import app
from autotune.cli.console import make_console

console = make_console()


@app.command()
def calibrate(
    folders: Annotated[
        list[Path], typer.Argument(metavar="DIR...", help="Folders of GPU results (trial folders, bench-*.json), searched recursively")
    ],
    profile: Annotated[
        Path | None, typer.Option("--profile", metavar="BASE.json", help="Profile to start from (default: the shipped one)")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", metavar="NEW.json", help="Write the calibrated profile here")
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", metavar="calib.md|json", help="Write the per-point report (Markdown or JSON)")
    ] = None,
    parameter: Annotated[
        list[str] | None,
        typer.Option("--parameter", help="Profile field to fit, repeatable (default: frontend and GPU step costs, "
                     "plus a quantization's compute factor when >= 2 points use it)"),
    ] = None,
    max_evals: Annotated[int, typer.Option("--max-evals", min=1, help="Simulator evaluations per fit")] = 120,
    folds: Annotated[
        int, typer.Option("--folds", min=0, help="k-fold hold-out (needs >= 8 points; 0: none)")
    ] = 4,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the k-fold split")] = 0,
    jobs: Annotated[int, typer.Option("--jobs", min=1, help="Processes predicting points in parallel")] = 1,
) -> None:
    """Calibrate the simulated engine on GPU measurements (closed-loop bench results with a known config).

    Simulated results are never used as ground truth. Prints each point measured vs predicted (the base
    profile and the fitted one) and the median absolute errors, in-sample and held out.
    """
    if report is not None:
        check_report_path(report)  # before minutes of fitting
    settings = CalibrationSettings(
        folders=folders, base_profile=profile, parameters=parameter or None, max_evals=max_evals, folds=folds,
        seed=seed, jobs=jobs,
    )
    outcome = run_calibration(settings)
    result = outcome.report
    console.print(rich_table(result))
    if result.skipped:
        counts = ", ".join(f"{reason} {n}" for reason, n in outcome.dataset.skip_counts().items())
        console.print(f"skipped {len(result.skipped)} result file(s): {counts}")
    console.print(f"fitted ({result.evaluations} simulator runs): " + ", ".join(f"{k}={v:.4g}" for k, v in result.fitted_parameters.items()))
    for label, errors in (
        ("base profile", result.median_abs_error_before),
        ("fitted, in-sample", result.median_abs_error_in_sample),
        (f"fitted, held out ({result.held_out_method})", result.median_abs_error_held_out),
    ):
        text = "-" if errors is None else f"throughput {errors.throughput_pct or 0:.1f}%, TTFT p50 {errors.ttft_p50_pct or 0:.1f}%"
        console.print(f"median abs error, {label}: {text}")
    if report is not None:
        console.print(f"report -> {write_report(result, report)}")
    if output is not None:
        console.print(f"calibrated profile -> {write_profile(outcome.profile, output)}")
    else:
        console.print("[yellow]no --output: the calibrated profile was not written[/]")
