"""The sustained SLO rate of served configs, read from a run of `scripts/gpu/sustained.py` (one folder per config).

Each config's folder holds `objective.json` (the tuner's objective measured on the served config: `autotune bench
--space`), `sustained.json` (`autotune bench --slo-rate --window-s 120`), `vllm-bench-p*.json` (independent `vllm
bench serve` processes sharing the sustained rate; where they missed the SLO, `vllm-bench-lower/` the same a step
below) and `record.json` (what the script decided and when). Every figure
here is computed from those files, stored plain or compressed (autotune.report.recorded).
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, Field

from autotune.bench.schemas import BenchResult, Summary
from autotune.bench.vllm_bench import VllmBenchCombined, VllmBenchFile, combine_results
from autotune.report import recorded


class SustainedConfig(BaseModel):
    """One served config: the three measurements and the GPU at the sustained rate."""

    config: str
    startup_s: float | None = None
    rate_rps: float | None = Field(default=None, description="Highest offered rate whose 120 s window met the SLO")
    failed_rps: float | None = Field(default=None, description="Lowest rate tried above it that missed (None: none)")
    objective_rps: float | None = Field(default=None, description="The tuner's objective on the same server")
    objective_failed_rps: float | None = None
    objective_vs_sustained: float | None = Field(default=None, description="objective_rps / rate_rps")
    vllm_bench_rate_rps: float | None = None
    vllm_bench: VllmBenchCombined | None = None
    vllm_bench_lower_rate_rps: float | None = Field(
        default=None, description="The independent client's second rate, a step below, run when it missed at the first")
    vllm_bench_lower: VllmBenchCombined | None = None
    vllm_bench_confirmed_rps: float | None = Field(
        default=None, description="The highest rate at which the independent client met the SLO (None: none it tried)")
    sm_active_pct: float | None = Field(default=None, description="NVML GPM SM activity in the sustained window")
    tensor_active_pct: float | None = None
    nvml_util_pct: float | None = Field(default=None, description="NVML's busy flag in the same window")
    client_processes_max: int | None = None
    client_saturated_windows: int = 0
    cache_hit_rate_max: float | None = Field(default=None, description="Highest prefix or multimodal hit rate of any window")
    windows: int = 0
    window_s: float | None = Field(default=None, description="The sustained measurement's fixed window length")
    note: str | None = None


class SustainedRun(BaseModel):
    kind: str = "sustained-slo-rate"
    made_by: str = "autotune.report.sustained (from the raw files of a scripts/gpu/sustained.py run)"
    source: str
    window_s: float | None = None
    hardware: dict[str, object] = Field(default_factory=dict)
    configs: dict[str, SustainedConfig]


def _result(path: Path) -> BenchResult | None:
    return BenchResult.model_validate_json(recorded.read_bytes(path)) if recorded.exists(path) else None


def _passing_window(result: BenchResult) -> Summary | None:
    rate = result.summary.slo_rate_rps
    return next((w for w in result.sweep if w.offered_rate_rps is not None and rate and abs(w.offered_rate_rps - rate) < 1e-6
                 and w.steady is not None and w.steady.met), None)


def _vllm_bench(folder: Path, slo: dict[str, float]) -> VllmBenchCombined | None:
    """The combined verdict of the `vllm bench serve` files in `folder` (None: none there)."""
    parts = sorted(recorded.glob(folder, "vllm-bench-p*.json")) if folder.is_dir() else []
    if not parts:
        return None
    files = [VllmBenchFile.model_validate_json(recorded.read_bytes(part)) for part in parts]
    return combine_results(files, slo, [str(p) for p in parts])


def summarize_config(folder: Path, slo: dict[str, float]) -> SustainedConfig:
    record = json.loads(recorded.read_text(folder / "record.json")) if recorded.exists(folder / "record.json") else {}
    out = SustainedConfig(config=str(record.get("config", folder.name)), startup_s=record.get("startup_s"))
    windows: list[Summary] = []
    objective = _result(folder / "objective.json")
    if objective is not None:
        out.objective_rps = objective.summary.slo_rate_rps
        out.objective_failed_rps = objective.summary.slo_rate_failed_rps
        windows += objective.sweep
    sustained = _result(folder / "sustained.json")
    if sustained is not None:
        out.rate_rps = sustained.summary.slo_rate_rps
        out.failed_rps = sustained.summary.slo_rate_failed_rps
        out.window_s = sustained.load.slo_rate_window_s
        windows += sustained.sweep
        passing = _passing_window(sustained)
        if passing is not None and passing.gpu is not None:
            out.sm_active_pct = passing.gpu.sm_active_mean
            out.tensor_active_pct = passing.gpu.tensor_active_mean
            out.nvml_util_pct = passing.gpu.util_mean
    if out.objective_rps and out.rate_rps:
        out.objective_vs_sustained = round(out.objective_rps / out.rate_rps, 4)
    out.vllm_bench = _vllm_bench(folder, slo)
    if out.vllm_bench is not None:
        out.vllm_bench_rate_rps = record.get("vllm_bench_rate_rps")
    out.vllm_bench_lower = _vllm_bench(folder / "vllm-bench-lower", slo)
    if out.vllm_bench_lower is not None:
        out.vllm_bench_lower_rate_rps = record.get("vllm_bench_lower_rate_rps")
    tried = ((out.vllm_bench_rate_rps, out.vllm_bench), (out.vllm_bench_lower_rate_rps, out.vllm_bench_lower))
    out.vllm_bench_confirmed_rps = next((rate for rate, verdict in tried if verdict is not None and verdict.meets_slo), None)
    out.windows = len(windows)
    out.client_processes_max = max((w.client.processes for w in windows), default=None)
    out.client_saturated_windows = sum(1 for w in windows if w.client.saturated)
    rates = [r for w in windows if w.cache is not None for r in (w.cache.prefix_hit_rate, w.cache.mm_hit_rate) if r is not None]
    out.cache_hit_rate_max = max(rates, default=None)
    if sustained is None:
        out.note = "no 120 s measurement in this run" if record else "not measured in this run"
    return out


def summarize_sustained(run: Path, configs: list[str], slo: dict[str, float]) -> SustainedRun:
    """`configs`: the config folders to report (a missing one is reported as not measured)."""
    env = json.loads(recorded.read_text(run / "env.json")) if recorded.exists(run / "env.json") else {}
    result = SustainedRun(source=str(run), hardware={k: env.get(k) for k in ("gpus", "cpu_count", "versions", "date")},
                          configs={})
    for name in configs:
        folder = run / name
        result.configs[name] = (summarize_config(folder, slo) if folder.is_dir()
                                else SustainedConfig(config=name, note="not measured in this run"))
    result.window_s = next((c.window_s for c in result.configs.values() if c.window_s is not None), None)
    return result
