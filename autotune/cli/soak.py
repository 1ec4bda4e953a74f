"""`autotune soak`: one steady open-loop rate against a real server for a long time; memory, descriptors and latency
series, a verdict, a plot.

Against a server already running (give its root pid so that its process tree's RSS and open descriptors are
sampled; GPU memory is sampled through NVML when there is a GPU):

    autotune soak --url http://127.0.0.1:8000 --pid 12345 --rate 12 --duration-s 1800 --out experiments/soak/RUN

Or starting `autotune serve --config best.yaml` itself (stopped at the end):

    autotune soak --config experiments/STUDY/best.yaml --rate 12 --duration-s 1800 --out DIR

Writes DIR/soak.json (autotune.bench.soak.SoakRecord: settings, bounds, windows, samples, per-request times,
problems) and DIR/soak.png; exits 1 when a bound broke (the problems are printed), 0 otherwise.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from autotune.bench.soak import SoakBounds, SoakSettings, first_judged_label, judged_windows, run_soak
from autotune.bench.soak_plot import plot_soak
from autotune.bench.soak_progress import (
    growth_since, latency_verdict, plot_progress, progress_table, read_progress, read_windows, windows_table,
)
from autotune.cli._app import app
from autotune.errors import AutotuneError, config_error_from
from autotune.tune.server_process import ServerProcess

_BOUNDS = SoakBounds()


@contextlib.contextmanager
def _server(url: str | None, pid: int | None, config: Path | None, out: Path) -> Iterator[tuple[str, int | None]]:
    if url:
        yield url, pid
        return
    out.mkdir(parents=True, exist_ok=True)
    with ServerProcess.from_serve_args(["--config", str(config), "--port", "0"], log_path=out / "server.log") as server:
        yield server.base_url, server.pid


@app.command()
def soak(
    rate: Annotated[float, typer.Option("--rate", help="Requests per second (constant arrivals)")],
    duration_s: Annotated[float, typer.Option("--duration-s", help="Seconds of the soak")],
    out: Annotated[Path, typer.Option("--out", help="Folder for soak.json and soak.png")],
    url: Annotated[str | None, typer.Option("--url", help="Base URL of a running OpenAI-compatible server")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Start `autotune serve --config CONFIG` on a free loopback port")] = None,
    pid: Annotated[int | None, typer.Option("--pid", help="The running server's root process (its tree is sampled)")] = None,
    workload: Annotated[str, typer.Option("--workload", help="Built-in workload name or YAML file")] = "vlm-chat",
    window_s: Annotated[float, typer.Option("--window-s", help="Windows the first and last of which are compared")] = 60.0,
    settle_s: Annotated[float, typer.Option("--settle-s", help="Seconds under load before the first judged window (a fresh server's buffers fill)")] = 0.0,
    warmup_requests: Annotated[int, typer.Option("--warmup-requests", help="Requests before the soak, not counted")] = 8,
    processes: Annotated[int | None, typer.Option("--processes", min=1, max=64, help="Client processes sharing the rate (default: sized from the rate, re-run when saturated)")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Model name to request (default: asked from /v1/models)")] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", help="Bearer key of the server (default: none)")] = None,
    memory_growth_mib: Annotated[float, typer.Option("--memory-growth-mib", "--rss-growth-mib", help="Bound: the server's memory growth (PSS, else RSS), last window over first")] = _BOUNDS.memory_growth_mib,
    fd_growth: Annotated[int, typer.Option("--fd-growth", help="Bound: open descriptors' growth, last window over first")] = _BOUNDS.fd_growth,
    p99_ratio: Annotated[float, typer.Option("--p99-ratio", help="Bound: p99 latency ratio, last window over first")] = _BOUNDS.p99_ratio,
    p99_slack_ms: Annotated[float, typer.Option("--p99-slack-ms", help="Bound: p99 growth allowed regardless of the ratio")] = _BOUNDS.p99_slack_ms,
) -> None:
    """Soak a real server at one steady rate: memory, descriptors and latency over time; exit 1 when a bound broke."""
    if (url is None) == (config is None):
        raise AutotuneError("give one of --url (a running server) and --config (start `autotune serve --config`)")
    try:
        settings = SoakSettings(
            rate_rps=rate, duration_s=duration_s, workload=workload, window_s=window_s, settle_s=settle_s,
            warmup_requests=warmup_requests, client_processes=processes,
            bounds=SoakBounds(memory_growth_mib=memory_growth_mib, fd_growth=fd_growth, p99_ratio=p99_ratio,
                              p99_slack_ms=p99_slack_ms),
        )
    except ValidationError as exc:
        raise config_error_from(exc, "options") from None
    with _server(url, pid, config, out) as (base_url, server_pid):
        record = run_soak(base_url, settings, server_pid=server_pid, model=model, api_key=api_key,
                          report=lambda line: typer.echo(line))
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.json").write_text(record.model_dump_json(indent=1))
    plot_soak(record, out / "soak.png")
    first, last = judged_windows(record)[0], record.windows[-1]
    typer.echo(f"{record.sent} requests, {record.failed} failed; {first_judged_label(first)} p99 TTFT {first.ttft_p99_ms} ms, E2E {first.e2el_p99_ms} ms, "
               f"RSS max {first.rss_max_mib} MiB, PSS max {first.pss_max_mib} MiB, fds max {first.fds_max}; "
               f"last window {last.ttft_p99_ms} ms, {last.e2el_p99_ms} ms, {last.rss_max_mib} MiB, {last.pss_max_mib} MiB, "
               f"{last.fds_max}")
    reads = [sample.read_ms for sample in record.samples if sample.read_ms is not None]
    if reads:
        typer.echo(f"sampling the server took {statistics.median(reads):.1f} ms (median), {max(reads):.1f} ms at most, "
                   f"every {settings.sample_interval_s:g} s")
    for problem in record.problems:
        typer.echo(f"problem: {problem}")
    typer.echo(f"{out / 'soak.json'}, {out / 'soak.png'}")
    if record.problems:
        raise typer.Exit(1)


@app.command("soak-progress")
def soak_progress(
    log: Annotated[Path, typer.Argument(help="A soak's output (soak.log): its progress lines are read, others skipped")],
    out: Annotated[Path, typer.Option("--out", help="Folder for progress.md (the table) and memory.png")],
    settle_s: Annotated[float, typer.Option("--settle-s", help="The soak's settling span, shaded in the plot")] = 0.0,
) -> None:
    """Rebuild a cut-off soak's memory series from its progress lines (a table, the growth after settling, a plot),
    and its windows' latencies and errors from the lines that told each window as it closed."""
    try:
        text = log.read_text()
    except OSError as exc:
        raise AutotuneError(f"cannot read {log}: {exc.strerror or exc}") from None
    samples = read_progress(text)
    if not samples:
        raise AutotuneError(f"{log} has no soak progress line ('soak: N s in: ...')")
    out.mkdir(parents=True, exist_ok=True)
    table = progress_table(samples)
    windows = read_windows(text)
    if windows:  # told as they closed (soaks since 2026-12-07c)
        table += "\n\n" + windows_table(windows)
        if verdict := latency_verdict(windows):
            table += "\n\n" + verdict
    (out / "progress.md").write_text(table + "\n")
    plot_progress(samples, out / "memory.png", settle_s=settle_s)
    typer.echo(table)
    if growth := growth_since(samples, settle_s):
        typer.echo(growth)
    typer.echo(f"{len(samples)} progress lines, {samples[0].t_s:g} to {samples[-1].t_s:g} s: "
               f"{out / 'progress.md'}, {out / 'memory.png'}")
