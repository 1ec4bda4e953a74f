"""Benchmark: workloads, load generation, metrics.

Exports are loaded lazily so that spawned client processes (which import
`autotune.bench.worker`) do not pay for pandas, PIL or httpx.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "run_benchmark": "autotune.bench.runner",
    "run_benchmark_sync": "autotune.bench.runner",
    "Workload": "autotune.bench.workload",
    "resolve_workload": "autotune.bench.workload",
    "load_workload": "autotune.bench.workload",
    "builtin_workloads": "autotune.bench.workload",
    "build_requests": "autotune.bench.prepare",
    "PreparedRequest": "autotune.bench.client",
    "compute_summary": "autotune.bench.metrics",
    "save_result": "autotune.bench.result",
    "load_result": "autotune.bench.result",
    "result_to_dataframe": "autotune.bench.result",
    "ServerUnreachableError": "autotune.bench.discovery",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'autotune.bench' has no attribute {name!r}")
