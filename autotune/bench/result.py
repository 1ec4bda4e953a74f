"""Benchmark result files: write, load, and view as a pandas DataFrame (one row per request).

A path ending in `.gz` is written and read gzip-compressed (results with per-request records are
large; recorded experiments keep them as `.json.gz`).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
from pydantic import ValidationError

from autotune.bench.metrics import tpot_ms
from autotune.bench.schemas import BenchResult
from autotune.errors import ConfigError, config_error_from


def save_result(result: BenchResult, path: str | Path) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    data = result.model_dump_json(indent=1).encode()
    tmp.write_bytes(gzip.compress(data) if target.suffix == ".gz" else data)
    tmp.replace(target)
    return target


def read_bytes(path: Path) -> bytes:
    """A result file's content; a path ending in `.gz` is read gzip-compressed (how recorded runs keep them)."""
    raw = path.read_bytes()
    return gzip.decompress(raw) if path.suffix == ".gz" else raw


def load_result(path: str | Path) -> BenchResult:
    source = Path(path)
    try:
        text = read_bytes(source)
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        return BenchResult.model_validate_json(text)
    except ValidationError as exc:
        raise config_error_from(exc, source) from None


def result_to_dataframe(result: BenchResult) -> pd.DataFrame:
    """One row per request (warm-up included, flagged), with TPOT and ITL mean/max per request."""
    rows = []
    for record in result.requests:
        gaps = record.itl_ms
        rows.append(
            {
                "index": record.index,
                "phase": record.phase,
                "warmup": record.warmup,
                "send_time_s": record.send_time_s,
                "success": record.success,
                "ttft_ms": record.ttft_ms,
                "tpot_ms": tpot_ms(record),
                "itl_mean_ms": sum(gaps) / len(gaps) if gaps else None,
                "itl_max_ms": max(gaps) if gaps else None,
                "e2el_ms": record.e2el_ms,
                "input_tokens": record.input_tokens,
                "output_tokens": record.output_tokens,
                "error": record.error,
            }
        )
    frame = pd.DataFrame(rows, columns=[
        "index", "phase", "warmup", "send_time_s", "success", "ttft_ms", "tpot_ms", "itl_mean_ms",
        "itl_max_ms", "e2el_ms", "input_tokens", "output_tokens", "error",
    ])
    frame.attrs.update({"url": result.url, "simulated": result.simulated, "workload": result.workload.get("name")})
    return frame
