"""The tuner's objective measured on a server that is already running: what a trial of SPACE would report for it.

A trial starts its own server, warms it up with `space.trial.warmup_requests` and measures `space.load` with the
space's workload and SLO. Here the same warm-up and measurement run against `url`, so a served config (e.g. a
`best.yaml` under `autotune serve`) can be compared with longer or independent measurements of the same server.
Only the client side may differ: the client cores, the seed, and a rate bracket that replaces the capacity probe
(`slo_rate_bracket`, which starts the same bisection from a known range).
"""

from __future__ import annotations

from pathlib import Path

from autotune.bench.runner import run_benchmark_sync
from autotune.bench.schemas import BenchResult
from autotune.bench.workload import resolve_workload
from autotune.space import SearchSpace


def measure_served_objective(
    url: str,
    space: SearchSpace,
    *,
    rate_bracket: tuple[float, float] | None = None,
    client_cpus: list[int] | None = None,
    seed: int | None = None,
    model: str | None = None,
    api_key: str | None = None,
    server_pid: int | None = None,
    progress: bool = False,
    stack_profile_dir: Path | None = None,
) -> BenchResult:
    updates: dict[str, object] = {}
    if rate_bracket is not None:
        updates["slo_rate_bracket"] = rate_bracket
    if client_cpus is not None:
        updates["client_cpus"] = client_cpus
    if seed is not None:
        updates["seed"] = seed
    load = space.load.model_copy(update=updates)
    load = type(load).model_validate(load.model_dump())  # the overrides pass the same checks as a space's load
    workload = resolve_workload(space.workload)
    if space.trial.warmup_requests > 0:
        run_benchmark_sync(url, workload, load.warmup(space.trial.warmup_requests), space.slo, model=model,
                           api_key=api_key, telemetry=False)
    return run_benchmark_sync(
        url, workload, load, space.slo, model=model, api_key=api_key, telemetry=True, progress=progress,
        server_pid=server_pid, stack_profile_dir=stack_profile_dir,
    )
