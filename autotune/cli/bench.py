"""`autotune bench`: drive an OpenAI-compatible server with a workload and report/save the result."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from pydantic import ValidationError

from autotune.bench.options import parse_cpu_list, parse_rate_range, parse_slo
from autotune.bench.report import print_report
from autotune.bench.result import save_result
from autotune.bench.runner import run_benchmark_sync
from autotune.bench.schemas import LoadSpec
from autotune.bench.trace import check_trace_workload
from autotune.bench.window_log import WindowLog, windows_path
from autotune.bench.workload import resolve_workload
from autotune.cli._app import app
from autotune.cli.console import make_console
from autotune.errors import ConfigError, config_error_from
from autotune.space import load_search_space
from autotune.tune.served_objective import measure_served_objective

if TYPE_CHECKING:
    from autotune.bench.schemas import BenchResult


@app.command()
def bench(
    url: Annotated[str, typer.Option(help="Server base URL, e.g. http://127.0.0.1:8000")],
    workload: Annotated[str, typer.Option(help="Built-in name (vlm-chat, vlm-chat-random-mm, text-chat, vlm-multi-image) or a YAML file")] = "vlm-chat",
    concurrency: Annotated[int | None, typer.Option(help="Closed loop: this many concurrent streams")] = None,
    rate: Annotated[float | None, typer.Option(help="Open loop: requests per second")] = None,
    sweep: Annotated[bool, typer.Option("--sweep", help="Find the max rate, then sweep rates up to it")] = False,
    slo_rate: Annotated[
        bool,
        typer.Option(
            "--slo-rate",
            help="Find the highest rate meeting the --slo p99s without falling behind: a capacity probe (at --concurrency, "
            "default 64, bounded by --num-requests/--duration), then steady-state windows at falling fractions of it and "
            "bisection to --rate-tolerance; windows are sized from the probe's latency unless --window-s",
        ),
    ] = False,
    window_s: Annotated[
        float | None,
        typer.Option("--window-s", help="--slo-rate: send each window for this many seconds (ramp + steady part; default: sized from latency)"),
    ] = None,
    rate_range: Annotated[
        str | None,
        typer.Option(
            "--rate-range",
            help="--slo-rate: LOW:HIGH req/s believed to bracket the answer: no capacity probe, bisection from it "
            "(an end is tried only when the search reaches it; the range grows if it was wrong)",
        ),
    ] = None,
    rate_tolerance: Annotated[
        float | None,
        typer.Option("--rate-tolerance", help="--slo-rate: bisect until the failing rate is within this fraction above the passing one [default: 0.05]"),
    ] = None,
    min_steady_s: Annotated[
        float | None, typer.Option("--min-steady-s", help="--slo-rate, sized windows: seconds of the steady part at least [default: 30]")
    ] = None,
    min_completions: Annotated[
        int | None,
        typer.Option("--min-completions", help="--slo-rate, sized windows: requests sent in the steady part at least [default: 600]"),
    ] = None,
    replay: Annotated[
        bool, typer.Option("--replay", help="Send a trace workload's requests at the trace's own times (docs/traces.md)")
    ] = False,
    time_scale: Annotated[
        float, typer.Option("--time-scale", help="--replay: send times are the trace's x this (0.5: twice as fast)")
    ] = 1.0,
    arrival: Annotated[Literal["poisson", "constant"], typer.Option(help="Open-loop arrivals")] = "poisson",
    num_requests: Annotated[int | None, typer.Option(help="Requests per measured run (default 200 unless --duration)")] = None,
    duration: Annotated[float | None, typer.Option(help="Seconds per measured run")] = None,
    warmup: Annotated[int, typer.Option(help="Warm-up requests, excluded from the figures")] = 0,
    processes: Annotated[int | None, typer.Option(help="Client processes (default: chosen from the load)")] = None,
    client_cpus: Annotated[str | None, typer.Option(help="Pin client processes to these CPUs, e.g. 0-3")] = None,
    slo: Annotated[list[str] | None, typer.Option(help="Goodput SLO, repeatable: ttft_ms=2000, tpot_ms=50, e2el_ms=...")] = None,
    sweep_steps: Annotated[int, typer.Option(help="Rates in a sweep")] = 6,
    max_rate: Annotated[float | None, typer.Option(help="Sweep: skip the max-throughput run and use this max rate")] = None,
    seed: Annotated[int, typer.Option(help="Seed of arrival times and requests; runs with different seeds send different images")] = 0,
    reset_caches: Annotated[
        bool,
        typer.Option(
            "--reset-caches",
            help="Reset the server's prefix, multimodal and encoder caches before every measured window (vLLM: start it "
            "with VLLM_SERVER_DEV_MODE=1); a dataset then needs only as many lines as one window sends",
        ),
    ] = False,
    model: Annotated[str | None, typer.Option(help="Model name to request (default: the server's first)")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="AUTOTUNE_API_KEY", help="Bearer token")] = None,
    telemetry: Annotated[bool, typer.Option(help="Sample GPUs with NVML")] = True,
    server_pid: Annotated[
        int | None,
        typer.Option(help="The server's root pid on this host: profile its processes' CPU use by role (frontend, engine core)"),
    ] = None,
    space: Annotated[
        Path | None,
        typer.Option(
            "--space",
            help="Measure with a search space's objective: its workload, SLO, load and warm-up, exactly as a trial of it "
            "would (only --rate-range, --client-cpus, --seed and --server-pid may be added)",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(help="Write the result JSON here (and each window, as it ends, to its .windows.jsonl beside it)"),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar")] = False,
) -> None:
    """Benchmark an OpenAI-compatible chat server (throughput, TTFT/TPOT/ITL, goodput, GPU)."""
    if space is not None:
        result = _bench_space_objective(
            url, space, rate_range=rate_range, client_cpus=client_cpus, seed=seed, model=model, api_key=api_key,
            server_pid=server_pid, quiet=quiet,
            others={"--workload": workload != "vlm-chat", "--concurrency": concurrency is not None, "--rate": rate is not None,
                    "--sweep": sweep, "--slo-rate": slo_rate, "--slo": bool(slo), "--window-s": window_s is not None,
                    "--rate-tolerance": rate_tolerance is not None, "--min-steady-s": min_steady_s is not None,
                    "--min-completions": min_completions is not None, "--num-requests": num_requests is not None,
                    "--duration": duration is not None, "--warmup": warmup != 0, "--processes": processes is not None,
                    "--replay": replay, "--time-scale": time_scale != 1.0, "--reset-caches": reset_caches},
        )
        print_report(result, make_console())
        if output is not None:
            save_result(result, output)
            make_console(stderr=True).print(f"result written to {output}")
        return
    chosen_modes = (
        ("concurrency", concurrency is not None and not slo_rate), ("rate", rate is not None), ("sweep", sweep), ("slo_rate", slo_rate),
        ("replay", replay),
    )
    modes = [name for name, chosen in chosen_modes if chosen]
    if len(modes) != 1:
        raise ConfigError(
            "choose exactly one of --concurrency N, --rate R, --sweep, --slo-rate or --replay" + (f" (got {', '.join(modes)})" if modes else "")
        )
    if time_scale != 1.0 and not replay:
        raise ConfigError(f"--time-scale applies to --replay only (got --time-scale {time_scale})")
    if slo_rate and not slo:
        raise ConfigError("--slo-rate needs at least one --slo (e.g. --slo ttft_ms=2000 --slo tpot_ms=50)")
    slo_rate_only = {"--window-s": window_s, "--rate-range": rate_range, "--rate-tolerance": rate_tolerance,
                     "--min-steady-s": min_steady_s, "--min-completions": min_completions}
    if not slo_rate and (given := [name for name, value in slo_rate_only.items() if value is not None]):
        raise ConfigError(f"{', '.join(given)}: for --slo-rate only")
    try:
        load = LoadSpec(
            mode=modes[0],  # type: ignore[arg-type]
            concurrency=concurrency,
            rate_rps=rate,
            arrival=arrival,
            num_requests=num_requests if num_requests is not None or duration is not None or replay else 200,
            duration_s=duration,
            time_scale=time_scale,
            warmup_requests=warmup,
            client_processes=processes,
            client_cpus=parse_cpu_list(client_cpus) if client_cpus else None,
            seed=seed,
            reset_caches=reset_caches,
            sweep_max_rate_rps=max_rate,
            sweep_steps=sweep_steps,
            slo_rate_window_s=window_s,
            slo_rate_bracket=parse_rate_range(rate_range) if rate_range else None,
            **{  # given ones only: LoadSpec holds the defaults
                name: value
                for name, value in (
                    ("slo_rate_tolerance", rate_tolerance),
                    ("slo_rate_min_steady_s", min_steady_s),
                    ("slo_rate_min_completions", min_completions),
                )
                if value is not None
            },
        )
    except ValidationError as exc:
        raise config_error_from(exc, "options") from None
    chosen = resolve_workload(workload)
    check_trace_workload(load, chosen)  # a bad trace, or --replay without one, before any request
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    window_log = WindowLog(windows_path(output) if output is not None else None, make_console(stderr=True))
    result = run_benchmark_sync(
        url, chosen, load, parse_slo(slo or []),
        model=model, api_key=api_key, telemetry=telemetry, progress=not quiet, server_pid=server_pid,
        on_window=window_log,
    )
    print_report(result, make_console())
    if output is not None:
        save_result(result, output)
        make_console(stderr=True).print(f"result written to {output}")


def _bench_space_objective(
    url: str, space: Path, *, rate_range: str | None, client_cpus: str | None, seed: int, model: str | None,
    api_key: str | None, server_pid: int | None, quiet: bool, others: dict[str, bool],
) -> BenchResult:
    """`--space`: the space's own objective; options that would change what it measures are refused by name."""
    if given := [name for name, set_ in others.items() if set_]:
        raise ConfigError(f"--space measures the space's own workload, SLO and load: drop {', '.join(given)}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return measure_served_objective(
        url,
        load_search_space(space),
        rate_bracket=parse_rate_range(rate_range) if rate_range else None,
        client_cpus=parse_cpu_list(client_cpus) if client_cpus else None,
        seed=seed or None,
        model=model,
        api_key=api_key,
        server_pid=server_pid,
        progress=not quiet,
    )
