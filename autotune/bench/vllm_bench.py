"""Read several `vllm bench serve --save-detailed` results that shared one offered rate as one measurement.

Each process's JSON holds per-request `ttfts` (s), `itls` (s, per request), `start_times` and `errors`; the
percentiles are taken over all processes' requests together (a p99 of p99s would not be one). TPOT of a request is
its mean inter-token latency, as vLLM's benchmark defines it (requests with one output token have none). This is how
`autotune bench` figures are confirmed by an independent client.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from autotune.bench.result import read_bytes
from autotune.errors import ConfigError


class VllmBenchFile(BaseModel):
    """The fields of one `vllm bench serve --save-result --save-detailed` JSON that are read here."""

    model_config = ConfigDict(extra="ignore")

    duration: float
    completed: int
    failed: int = 0
    request_rate: float | str | None = None
    ttfts: list[float]
    itls: list[list[float]]
    start_times: list[float] = Field(default_factory=list)
    errors: list[str | None] = Field(default_factory=list)


class VllmBenchCombined(BaseModel):
    processes: int
    offered_rate_rps: float = Field(description="Sum of the processes' --request-rate")
    completed: int
    failed: int
    throughput_rps: float = Field(description="Completed requests over the longest process's duration")
    duration_s_max: float
    send_span_s: float | None = Field(default=None, description="First to last request start over all processes")
    ttft_ms_p50: float
    ttft_ms_p99: float
    tpot_ms_p50: float
    tpot_ms_p99: float
    slo: dict[str, float]
    meets_slo: bool
    misses: list[str]


def read_vllm_bench(path: Path) -> VllmBenchFile:
    """One result file; a path ending in `.gz` is read gzip-compressed (recorded runs keep them so)."""
    try:
        data = VllmBenchFile.model_validate_json(read_bytes(path))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable `vllm bench serve --save-detailed` result: {exc}") from None
    if len(data.itls) != len(data.ttfts):
        raise ConfigError(f"{path}: ttfts and itls differ in length (saved without --save-detailed?)")
    return data


def _check_slo(slo: dict[str, float]) -> None:
    unknown = set(slo) - {"ttft_ms", "tpot_ms"}
    if unknown:
        raise ConfigError(f"slo: {sorted(unknown)} not supported here (allowed: ttft_ms, tpot_ms)")


def combine(paths: list[Path], slo: dict[str, float]) -> VllmBenchCombined:
    """One verdict over the requests of every file; `slo` maps ttft_ms/tpot_ms to their p99 bounds."""
    _check_slo(slo)
    return combine_results([read_vllm_bench(path) for path in paths], slo, [str(p) for p in paths])


def combine_results(files: list[VllmBenchFile], slo: dict[str, float], names: list[str] | None = None) -> VllmBenchCombined:
    """`combine` over results already read (e.g. from compressed records)."""
    _check_slo(slo)
    ttft_ms: list[float] = []
    tpot_ms: list[float] = []
    starts: list[float] = []
    offered = 0.0
    for data in files:
        errors = data.errors or [None] * len(data.ttfts)
        for ttft, itls, error in zip(data.ttfts, data.itls, errors, strict=True):
            if error:
                continue
            ttft_ms.append(1000 * ttft)
            if itls:
                tpot_ms.append(1000 * float(np.mean(itls)))
        starts.extend(data.start_times)
        if isinstance(data.request_rate, int | float):
            offered += float(data.request_rate)
    if not ttft_ms or not tpot_ms:
        raise ConfigError(f"no successful request with output in {names or f'{len(files)} results'}")
    p99 = {"ttft_ms": float(np.percentile(ttft_ms, 99)), "tpot_ms": float(np.percentile(tpot_ms, 99))}
    failed = sum(d.failed for d in files)
    misses = [f"p99 {key} {p99[key]:.1f} > {bound:g}" for key, bound in slo.items() if p99[key] > bound]
    if failed:
        misses.append(f"{failed} failed requests")
    duration = max(d.duration for d in files)
    return VllmBenchCombined(
        processes=len(files),
        offered_rate_rps=offered,
        completed=sum(d.completed for d in files),
        failed=failed,
        throughput_rps=sum(d.completed for d in files) / duration,
        duration_s_max=duration,
        send_span_s=(max(starts) - min(starts)) if starts else None,
        ttft_ms_p50=float(np.percentile(ttft_ms, 50)),
        ttft_ms_p99=p99["ttft_ms"],
        tpot_ms_p50=float(np.percentile(tpot_ms, 50)),
        tpot_ms_p99=p99["tpot_ms"],
        slo=slo,
        meets_slo=not misses,
        misses=misses,
    )
