"""Terminal report of a benchmark result (rich tables). Simulated results say so in the title;
a saturated client is shown in red, since its figures describe the client as much as the server."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from autotune.bench.metrics import measured
from autotune.bench.schemas import BenchResult, Stats, Summary
from autotune.observe.cpu import ServerCpuProfile, bottleneck_hint
from autotune.observe.gpm import NVML_BUSY_LABEL, SM_ACTIVE_LABEL, gpm_shown
from autotune.observe.gpu import GpuSummary


def _num(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _slo_rate_text(summary: Summary) -> str:
    """The rate, and the bracket it was bisected to (or that it is a lower bound)."""
    text = _num(summary.slo_rate_rps, 2)
    if summary.slo_rate_censored:
        return f">= {text} (no rate tried above it missed)"
    if summary.slo_rate_failed_rps is not None:
        text += f" (missed at {_num(summary.slo_rate_failed_rps, 2)})"
    return text


def _stats_row(table: Table, name: str, stats: Stats) -> None:
    table.add_row(name, *(_num(getattr(stats, key)) for key in ("mean", "p50", "p90", "p99", "max")))


def summary_table(summary: Summary, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    for column in ("mean", "p50", "p90", "p99", "max"):
        table.add_column(column, justify="right")
    _stats_row(table, "TTFT ms", summary.ttft_ms)
    _stats_row(table, "TPOT ms", summary.tpot_ms)
    _stats_row(table, "ITL ms", summary.itl_ms)
    _stats_row(table, "E2E latency ms", summary.e2el_ms)
    return table


def totals_table(summary: Summary) -> Table:
    table = Table(show_header=False, box=None)
    table.add_column("name")
    table.add_column("value", justify="right")
    load = f"{summary.concurrency} concurrent" if summary.concurrency else f"{_num(summary.offered_rate_rps, 2)} req/s offered"
    rows = [
        ("load", load),
        ("requests ok / failed", f"{summary.completed} / {summary.failed} ({summary.error_rate:.1%} errors)"),
        ("duration s", _num(summary.duration_s, 2)),
        ("throughput req/s", _num(summary.throughput_rps, 2)),
        ("goodput req/s", _num(summary.goodput_rps, 2)),
        *([("highest rate within SLO p99s req/s", _slo_rate_text(summary))] if summary.slo_rate_rps is not None else []),
        ("output tok/s", _num(summary.output_tok_s)),
        ("input tok/s", _num(summary.input_tok_s)),
    ]
    rows += gpu_rows(summary.gpu)
    for name, value in summary.server.items():
        rows.append((f"server {name}", _num(value, 3)))
    client = summary.client
    rows.append(
        ("client", f"{client.processes} process(es), CPU max {_num(None if client.cpu_util_max is None else 100 * client.cpu_util_max)}%, "
         f"loop lag p99 {_num(client.loop_lag_p99_ms)} ms")
    )
    if client.discarded_attempts:
        rows.append(("client re-sized", ", ".join(f"{a.processes} process(es) saturated" for a in client.discarded_attempts)))
    if summary.cache is not None:
        rows.append(("cache hits prefix / mm", _cache_text(summary)))
    for name, value in rows:
        table.add_row(name, value)
    return table


def gpu_rows(gpu: GpuSummary | None) -> list[tuple[str, str]]:
    """GPU activity, both kinds labeled: NVML busy (any kernel running) and the SM counters (GPM), or why not."""
    if gpu is None:
        return [("GPU", "telemetry not available (no NVML busy, GPM unavailable)")]
    rows = [(f"GPU {NVML_BUSY_LABEL} % mean / p95 (any kernel running)", f"{_num(gpu.util_mean)} / {_num(gpu.util_p95)}")]
    if gpu.sm_active_mean is not None:
        rows.append((f"GPU {SM_ACTIVE_LABEL} % mean / p95", f"{_num(gpu.sm_active_mean)} / {_num(gpu.sm_active_p95)}"))
        rows.append(("GPU SM occupancy / tensor pipes / DRAM bw % (GPM)",
                     f"{_num(gpu.sm_occupancy_mean)} / {_num(gpu.tensor_active_mean)} / {_num(gpu.dram_bw_mean)}"))
        if gpu.gpm_status not in (None, "ok"):
            rows.append(("GPM", str(gpu.gpm_status)))
    else:
        rows.append((f"GPU {SM_ACTIVE_LABEL}", gpm_shown(gpu.gpm_status)))
    rows.append(("GPU memory max MiB", _num(gpu.mem_used_max_mib, 0)))
    rows.append(("GPU power mean W", _num(gpu.power_mean_w)))
    return rows


def _cache_text(summary: Summary) -> str:
    cache = summary.cache
    assert cache is not None

    def rate(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1%}"

    text = f"{rate(cache.prefix_hit_rate)} / {rate(cache.mm_hit_rate)} (declared {cache.prefix_declared:.0%} / {cache.mm_declared:.0%})"
    return f"[red]{text} CACHE-FLATTERED[/]" if cache.flattered else text


def server_cpu_table(profile: ServerCpuProfile) -> Table:
    pinned = f"pinned to {len(profile.affinity)} of {profile.host_cpus} CPUs" if profile.affinity else "not pinned"
    table = Table(title=f"server CPU by role, cores ({pinned}): {bottleneck_hint(profile)}", title_justify="left")
    for column in ("role", "processes", "mean", "p95", "max", "busiest process mean"):
        table.add_column(column, justify="right")
    for role, cpu in profile.roles.items():
        if cpu.processes:
            table.add_row(
                role, str(cpu.processes), _num(cpu.cores_mean, 2), _num(cpu.cores_p95, 2), _num(cpu.cores_max, 2),
                _num(cpu.busiest_process_cores_mean, 2),
            )
    table.add_row("total", "", _num(profile.total_cores_mean, 2), _num(profile.total_cores_p95, 2), _num(profile.total_cores_max, 2), "")
    return table


def sweep_table(steps: list[Summary], title: str = "sweep") -> Table:
    table = Table(title=title, title_justify="left")
    columns = ("load", "throughput req/s", "errors", "goodput req/s", "TTFT p50 / p99 ms", "TPOT p50 / p99 ms", "client")
    steady = any(step.steady is not None for step in steps)
    for column in columns:
        table.add_column(column, justify="right")
    if steady:  # slo_rate: each window's steady part, backlog and verdict
        table.add_column("steady s (ramp s)", justify="right")
        table.add_column("backlog growth / limit", justify="right")
        table.add_column("verdict", justify="left")
    for step in steps:
        load = f"{_num(step.offered_rate_rps, 2)} req/s" if step.offered_rate_rps else f"{step.concurrency} concurrent"
        cells = [
            load, _num(step.throughput_rps, 2), f"{step.error_rate:.1%}",
            _num(step.goodput_rps, 2), f"{_num(step.ttft_ms.p50)} / {_num(step.ttft_ms.p99)}",
            f"{_num(step.tpot_ms.p50)} / {_num(step.tpot_ms.p99)}",
            "[red]SATURATED[/]" if step.client.saturated else "[red]CACHE-FLATTERED[/]" if step.cache and step.cache.flattered else "ok",
        ]
        if steady:
            window = step.steady
            cells += (
                ["capacity probe", "", ""]
                if window is None
                else [
                    f"{window.steady_s:.1f} ({window.ramp_s:.1f})",
                    f"{window.backlog_growth:.0f} / {window.backlog_growth_limit:.0f}",
                    "met" if window.met else f"[red]{window.verdict}[/]",
                ]
            )
        table.add_row(*cells)
    return table


def print_report(result: BenchResult, console: Console | None = None) -> None:
    console = console or Console()
    label = "[bold yellow]SIMULATED engine (not a GPU measurement)[/] " if result.simulated else ""
    title = f"{label}{result.workload.get('name', '?')} @ {result.url}"
    console.print(summary_table(result.summary, title))
    console.print(totals_table(result.summary))
    if result.summary.server_cpu is not None:
        console.print(server_cpu_table(result.summary.server_cpu))
    if result.sweep:
        slo_rate = result.load.mode == "slo_rate"
        console.print(sweep_table(result.sweep, "slo_rate windows in the order run (steady parts only)" if slo_rate else "sweep"))
    saturated = [s.client for s in (result.summary, *result.sweep) if s.client.saturated]
    for client in saturated[:1]:
        console.print(
            f"[bold red]CLIENT SATURATED: {client.reason}. These figures measure the load generator, not only the server.[/]"
        )
    flattered = [s.cache for s in (result.summary, *result.sweep) if s.cache is not None and s.cache.flattered]
    for cache in flattered[:1]:
        console.print(f"[bold red]CACHE-FLATTERED: {cache.reason}. Such a window is never an objective value.[/]")
    failed = [r for r in measured(result.requests) if not r.success]
    if failed:
        console.print(f"[red]{len(failed)} failed request(s); first error: {failed[0].error}[/]")
