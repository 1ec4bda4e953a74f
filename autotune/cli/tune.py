"""`autotune tune`, `best`, `trials`, `sync-mlflow`: parse options, call autotune.tune, print."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import optuna
import typer
from rich.table import Table

from autotune.bench.options import parse_cpu_list
from autotune.cli._app import app
from autotune.cli.console import make_console
from autotune.config import EngineKind, load_tuned_config
from autotune.errors import ConfigError
from autotune.observe.names import NVML_BUSY_METRIC, metric_column
from autotune.tune.budget import plan_run
from autotune.tune.finalize import write_best_from_storage
from autotune.tune.mlflow_sync import sync_mlflow as run_sync
from autotune.tune.quickstart import tune_space
from autotune.tune.report import (
    GPU_ACTIVITY_COLUMNS,
    LiveTrialsTable,
    comparison_table,
    gpu_activity_cell,
    trials_cell,
    trials_frame,
    tuned_fields_table,
)
from autotune.tune.screen import ScreenSettings
from autotune.tune.session import reopen_study
from autotune.tune.settings import TuneOutcome, TuneSettings
from autotune.tune.study import run_tuning, start_study

ExperimentsDir = Annotated[
    Path, typer.Option("--experiments-dir", help="Folder holding one sub-folder per study")
]
StorageUrl = Annotated[
    str | None,
    typer.Option("--storage", envvar="AUTOTUNE_STORAGE", help="Optuna RDB URL (default: SQLite in the study folder)"),
]
MlflowUri = Annotated[
    str | None,
    typer.Option("--mlflow-uri", envvar="AUTOTUNE_MLFLOW_URI", help="MLflow tracking URI (default: SQLite in the study folder)"),
]


def _quiet_optuna() -> None:
    # The live table reports every trial; Optuna's own lines (and a traceback per failed trial) are noise.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("autotune").setLevel(logging.WARNING)
    # The header and every table say SIMULATED; the benchmark's per-run reminder would repeat it twice a trial.
    logging.getLogger("autotune.bench.runner").setLevel(logging.ERROR)


@app.command()
def tune(
    space_file: Annotated[
        Path | None,
        typer.Argument(metavar="SPACE.yaml", help="Search space YAML; without it, --model, --workload and --slo build one"),
    ] = None,
    engine: Annotated[EngineKind | None, typer.Option("--engine", help="Default: the space's engine")] = None,
    study: Annotated[str | None, typer.Option("--study", help="Study name (default: the space name); resumes")] = None,
    storage: StorageUrl = None,
    n_trials: Annotated[
        int | None, typer.Option("--n-trials", min=0, help="Trials this run (default: the rest of the budget)")
    ] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", min=1, help="Stop starting trials after S seconds")] = None,
    mlflow_uri: MlflowUri = None,
    no_mlflow: Annotated[bool, typer.Option("--no-mlflow", help="Do not log to MLflow")] = False,
    experiments_dir: ExperimentsDir = Path("experiments"),
    model: Annotated[str | None, typer.Option("--model", help="Replace the space's model (path or hub id)")] = None,
    workload: Annotated[
        str | None, typer.Option("--workload", help="Without SPACE.yaml: a built-in workload or a workload file")
    ] = None,
    slo: Annotated[
        list[str] | None, typer.Option("--slo", help="Without SPACE.yaml: a latency SLO, repeatable: ttft_ms=2000, tpot_ms=50")
    ] = None,
    serve: Annotated[bool, typer.Option("--serve", help="Serve the best config when the study ends")] = False,
    server_cpus: Annotated[
        str | None, typer.Option("--server-cpus", help="Pin each trial's server to these cores, e.g. 0-11 (recorded per trial)")
    ] = None,
    client_cpus: Annotated[
        str | None, typer.Option("--client-cpus", help="Pin the load generator to these cores, e.g. 12-15 (recorded per trial)")
    ] = None,
    screen: Annotated[
        int | None,
        typer.Option("--screen", min=2, metavar="K", help="Before each trial, predict K sampled configs with the simulator "
                     "and serve only the best predicted one (predictions, not measurements)"),
    ] = None,
    screen_profile: Annotated[
        Path | None, typer.Option("--screen-profile", metavar="PROFILE.json", help="Calibrated simulator profile for --screen "
                                  "(default: the shipped H100 stand-in, not calibrated; autotune/profiles/h200-qwen3-vl-4b.json is calibrated)")
    ] = None,
    screen_uncalibrated: Annotated[
        bool, typer.Option("--screen-uncalibrated", help="Allow --screen with a profile that says calibrated: false")
    ] = False,
    confirm: Annotated[
        int, typer.Option("--confirm", min=0, max=10, metavar="N",
                          help="Queue N more measurements each of the current best config and vLLM's defaults, "
                          "interleaved, ahead of new samples; the best is then chosen on its mean")
    ] = 0,
    stack_profile_hz: Annotated[
        float | None,
        typer.Option("--stack-profile-hz", min=1, max=1000, metavar="HZ",
                     help="Each server process samples its Python threads' stacks HZ times a second during the measured "
                          "windows: trials/N/stack_profile.json (where the API servers and the engine core are busy)"),
    ] = None,
    compile_cache: Annotated[
        Path | None,
        typer.Option("--compile-cache", metavar="DIR",
                     help="VLLM_CACHE_ROOT of every vLLM trial server: one torch.compile cache across trials and runs "
                          "(default: $VLLM_CACHE_ROOT, else vLLM's ~/.cache/vllm)"),
    ] = None,
    warm_start: Annotated[
        bool,
        typer.Option("--warm-start",
                     help="Fork each trial's server from one parent that imported vLLM, torch and transformers once, "
                          "instead of a new interpreter per trial (each server still in its own process group); a "
                          "trial whose environment changes what is read at import starts cold, and says why"),
    ] = False,
) -> None:
    """Tune vLLM engine settings on a workload: one served and benchmarked config per trial."""
    console = make_console()  # made per call: its width follows the environment of this call
    space, study, built = tune_space(
        space_file, model=model, workload=workload, slo=slo, engine=engine, study=study, experiments_dir=experiments_dir
    )
    if built is not None:  # the one-line start: a space for this model, workload, SLO and GPU, written beside the study
        console.print(f"search space {built} (built for this model and GPU: edit it, then `autotune tune {built}`)")
    settings = TuneSettings(
        study=study,
        engine=engine,
        storage=storage,
        n_trials=n_trials,
        timeout_s=timeout,
        mlflow_uri=mlflow_uri,
        mlflow=not no_mlflow,
        experiments_dir=experiments_dir,
        server_cpus=parse_cpu_list(server_cpus, option="--server-cpus") if server_cpus else None,
        client_cpus=parse_cpu_list(client_cpus) if client_cpus else None,
        screen=None if screen is None else ScreenSettings(
            candidates=screen, profile=screen_profile, allow_uncalibrated=screen_uncalibrated
        ),
        confirm=confirm,
        stack_profile_hz=stack_profile_hz,
        compile_cache_dir=compile_cache,
        warm_start=warm_start,
    )
    _quiet_optuna()
    session = start_study(space, settings)  # errors (inputs, folder, storage, space mismatch) before anything runs
    plan = plan_run(session.study, space, n_trials)
    if plan.spent:
        console.print(f"[yellow]{plan.spent}[/]", highlight=False)
    kind = session.engine
    label = "SIMULATED engine (not GPU measurements)" if kind is EngineKind.SIMULATED else f"{kind.value} engine"
    console.print(f"study [bold]{session.name}[/] ({label}), objective {space.objective.kind}, folder {session.study_dir}")
    table = LiveTrialsTable(
        space, console, planned=plan.n_trials, title=f"{session.name}: trials", timeout_s=timeout or space.budget.timeout_s
    )
    with table:
        outcome = run_tuning(space, settings, display=table, callbacks=[table], session=session)
    _print_outcome(outcome)
    if serve:
        console.print(f"serving {outcome.best_path}")
        from autotune.cli.serve import serve as serve_command  # the server's imports only when it is served

        serve_command(config=outcome.best_path)


def _print_outcome(outcome: TuneOutcome) -> None:
    console = make_console()  # made per call: its width follows the environment of this call
    if outcome.recovered:
        console.print(f"trials {outcome.recovered}: their worker had died; marked FAIL")
    console.print(f"trials by state: {outcome.counts}; table {outcome.trials_csv}")
    shared = "" if outcome.storage.startswith("sqlite:") else " --storage URL"
    console.print(
        f"figures (history, importances, Pareto front, latency CDFs): autotune report {outcome.study} "
        f"--experiments-dir {outcome.study_dir.parent}{shared}"
    )
    if outcome.best_path is None:
        console.print("[yellow]no feasible trial completed: no best config[/]")
        raise typer.Exit(1)
    console.print(f"best: trial {outcome.best_trial} -> {outcome.best_path}")
    _print_best(outcome.best_path)
    if outcome.confirmation is not None:
        c = outcome.confirmation
        console.print(
            f"repeated measurements of {c.metric}: best (trials {c.best.trials}) {c.best.values}, "
            f"defaults (trials {c.defaults.trials}) {c.defaults.values}: {c.verdict}"
        )


def _print_best(path: Path) -> None:
    console = make_console()  # made per call: its width follows the environment of this call
    tuned = load_tuned_config(path)
    if tuned.provenance.simulated:
        console.print("[bold yellow]SIMULATED engine: these figures are not GPU measurements[/]")
    console.print(comparison_table(tuned))
    console.print(tuned_fields_table(tuned))


@app.command()
def best(
    study: Annotated[str, typer.Argument(help="Study name")],
    storage: Annotated[
        str | None,
        typer.Option("--storage", envvar="AUTOTUNE_STORAGE", help="Choose the best from this Optuna RDB (a study of several "
                     "hosts) and write it to the study folder; default: the study folder's best.yaml"),
    ] = None,
    experiments_dir: ExperimentsDir = Path("experiments"),
) -> None:
    """Print a study's best config (best.yaml) and a table of vLLM defaults vs best."""
    console = make_console()  # made per call: its width follows the environment of this call
    path = experiments_dir / study / "best.yaml"
    if storage is not None:
        path = write_best_from_storage(study, experiments_dir=experiments_dir, storage=storage)
    if not path.is_file():
        raise ConfigError(f"study {study!r}: no {path} (has the study completed a feasible trial?)")
    console.print(path.read_text(), highlight=False, markup=False)
    _print_best(path)


@app.command()
def trials(
    study: Annotated[str, typer.Argument(help="Study name")],
    csv: Annotated[Path | None, typer.Option("--csv", help="Write every trial to this CSV file")] = None,
    storage: StorageUrl = None,
    experiments_dir: ExperimentsDir = Path("experiments"),
) -> None:
    """List a study's trials (state, params, metrics, reasons), or export them as CSV."""
    console = make_console()  # made per call: its width follows the environment of this call
    session = reopen_study(study, experiments_dir=experiments_dir, storage=storage, mlflow=False)
    frame = trials_frame(session.study)
    if csv is not None:
        csv.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(csv, index=False)
        console.print(f"{len(frame)} trials -> {csv}")
        return
    columns = [c for c in frame.columns if c in ("number", "state", "reason") or c.startswith("param_")]
    columns += [f"metric_{m}" for m in ("throughput_rps", "goodput_rps", "ttft_ms_p99") if f"metric_{m}" in frame]
    columns += [c for c in ("screening_value", "start_total_s", "compile_cache") if c in frame and frame[c].notna().any()]
    gpu = [(column, header) for column, header in GPU_ACTIVITY_COLUMNS.items() if metric_column(NVML_BUSY_METRIC) in frame]
    table = Table(title=f"study {study}: {len(frame)} trials")
    for column in columns:
        table.add_column(column.removeprefix("param_").removeprefix("metric_"), overflow="fold")
    for _, header in gpu:
        table.add_column(header, overflow="fold")
    for _, row in frame.iterrows():
        cells = [trials_cell(row[c], c) for c in columns]
        cells += [gpu_activity_cell(row.to_dict(), column) for column, _ in gpu]
        table.add_row(*cells)
    console.print(table)


@app.command("sync-mlflow")
def sync_mlflow(
    study: Annotated[str, typer.Argument(help="Study name")],
    mlflow_uri: MlflowUri = None,
    storage: StorageUrl = None,
    experiments_dir: ExperimentsDir = Path("experiments"),
) -> None:
    """Log to MLflow the trials it lacks (after MLflow was unreachable); each trial is logged once."""
    console = make_console()  # made per call: its width follows the environment of this call
    synced = run_sync(study, experiments_dir=experiments_dir, storage=storage, mlflow_uri=mlflow_uri)
    console.print(f"logged {len(synced)} trial(s) to MLflow: {synced}")
