"""Calibration points: GPU measurements of one engine config each, collected from result folders.

A point is a closed-loop `autotune bench` result (BenchResult JSON: a trial's `result.json` or a
`bench-*.json`) whose server config is known, measured on a real engine. Everything else is skipped
with its reason and counted: simulated results are never ground truth.

Where the config comes from: the result's `server_config.engine_config` (our server reported it), else a
`config.yaml` (TunedConfig) beside the result (a trial folder). A `trial.json` beside it must say `complete`.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from autotune.bench.schemas import BenchResult
from autotune.bench.workload import Workload
from autotune.base_models import FrozenModel
from autotune.config import EngineConfig, EngineKind, load_tuned_config
from autotune.errors import AutotuneError, ConfigError, format_validation_error

RESULT_PATTERNS = ("result.json", "result.json.gz", "bench-*.json", "bench-*.json.gz", "compare-*.json", "compare-*.json.gz", "slo-rate-*.json.gz")
MAX_ERROR_RATE = 0.05  # a run with more failed requests than this is not a measurement of the config

SkipReason = Literal[
    "unreadable",
    "simulated",
    "not_closed_loop",
    "failed",
    "client_saturated",
    "cache_flattered",
    "no_config",
    "unsupported_workload",
    "duplicate",
]


class CalibrationPoint(FrozenModel):
    """One measured (config, workload, concurrency) and its figures."""

    source: str = Field(description="The result file")
    engine_config: EngineConfig
    workload: Workload
    concurrency: int = Field(ge=1, description="Closed-loop concurrent streams")
    num_requests: int = Field(ge=1, description="Measured requests (warm-up excluded)")
    throughput_rps: float = Field(gt=0)
    ttft_ms_p50: float | None = None
    tpot_ms_p50: float | None = None
    simulated: Literal[False] = Field(default=False, description="Always False: only GPU measurements are points")
    gpu_name: str | None = None
    vllm_version: str | None = None

    @property
    def label(self) -> str:
        return self.source


class SkippedResult(FrozenModel):
    source: str
    reason: SkipReason
    detail: str = ""


class CalibrationDataset(FrozenModel):
    folders: list[str]
    points: list[CalibrationPoint]
    skipped: list[SkippedResult]

    def skip_counts(self) -> dict[str, int]:
        return dict(Counter(skip.reason for skip in self.skipped))

    def describe_skips(self) -> str:
        """One line per skipped result (for errors and logs)."""
        return "\n".join(f"  {skip.source}: {skip.reason}{': ' + skip.detail if skip.detail else ''}" for skip in self.skipped)


class _Skip(AutotuneError):
    def __init__(self, reason: SkipReason, detail: str = "") -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def result_files(folders: Iterable[Path]) -> list[Path]:
    """Every result file under the folders (recursively), each once; copies (MLflow artifacts) last."""
    found: dict[Path, None] = {}
    for folder in folders:
        if not folder.is_dir():
            raise ConfigError(f"{folder}: no such folder of results")
        for pattern in RESULT_PATTERNS:
            for path in folder.rglob(pattern):
                if path.is_file():
                    found.setdefault(path.resolve(), None)
    return sorted(found, key=lambda path: ("mlartifacts" in path.parts, str(path)))


def collect_points(folders: Sequence[str | Path]) -> CalibrationDataset:
    """Calibration points from one or more folders of results; every other result is skipped with its reason."""
    paths = [Path(folder) for folder in folders]
    points: list[CalibrationPoint] = []
    skipped: list[SkippedResult] = []
    seen: dict[str, str] = {}
    for path in result_files(paths):
        try:
            point = point_from_file(path)
        except _Skip as skip:
            skipped.append(SkippedResult(source=_shown(path), reason=skip.reason, detail=skip.detail))
            continue
        key = _identity(point)
        if key in seen:
            skipped.append(SkippedResult(source=_shown(path), reason="duplicate", detail=f"same run as {seen[key]}"))
            continue
        seen[key] = point.source
        points.append(point)
    return CalibrationDataset(folders=[str(p) for p in paths], points=points, skipped=skipped)


def _identity(point: CalibrationPoint) -> str:
    """Same config, load and figures: the same run (a trial's result.json and its MLflow artifact copy)."""
    data = point.model_dump(mode="json", exclude={"source"})
    return json.dumps(data, sort_keys=True)


def point_from_file(path: Path) -> CalibrationPoint:
    """One result file as a point; raises `_Skip` with the reason it is not one."""
    try:
        raw = path.read_bytes()
        data = json.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw)
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _Skip("unreadable", f"not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("kind") != "autotune-bench-result":
        raise _Skip("unreadable", "not an autotune bench result (kind autotune-bench-result)")
    try:
        result = BenchResult.model_validate(data)
    except ValidationError as exc:
        raise _Skip("unreadable", format_validation_error(exc).replace("\n", "; ")) from None
    trial = _trial_record(path)
    if _is_simulated(result, trial):
        raise _Skip("simulated", "the simulated engine: not a GPU measurement")
    summary, concurrency = result.summary, result.load.concurrency
    if result.load.mode == "slo_rate" and result.sweep and result.sweep[0].concurrency is not None:
        summary, concurrency = result.sweep[0], result.sweep[0].concurrency  # its closed-loop capacity probe
    elif result.load.mode != "concurrency" or concurrency is None:
        raise _Skip("not_closed_loop", f"load mode {result.load.mode!r} (only closed-loop runs and slo_rate probes are points)")
    if trial is not None and trial.get("state") != "complete":
        raise _Skip("failed", f"trial state {trial.get('state')!r}: {trial.get('reason') or ''}".rstrip(": "))
    if summary.completed == 0 or summary.throughput_rps <= 0:
        raise _Skip("failed", "no request completed")
    if summary.error_rate > MAX_ERROR_RATE:
        raise _Skip("failed", f"error rate {summary.error_rate:.2f} > {MAX_ERROR_RATE}")
    if summary.client.saturated:
        raise _Skip("client_saturated", summary.client.reason or "the load generator was the limit")
    if summary.cache is not None and summary.cache.flattered:
        raise _Skip("cache_flattered", summary.cache.reason or "requests reached the server twice")
    engine = _engine_config(path, result)
    try:
        workload = Workload.model_validate(result.workload)
    except ValidationError as exc:
        raise _Skip("unsupported_workload", format_validation_error(exc).replace("\n", "; ")) from None
    if workload.kind != "synthetic":
        raise _Skip("unsupported_workload", f"workload kind {workload.kind!r}: only synthetic workloads can be simulated")
    gpus = (summary.gpu.devices if summary.gpu else []) or list(result.hardware.get("gpus") or [])
    return CalibrationPoint(
        source=_shown(path),
        engine_config=engine,
        workload=workload,
        concurrency=concurrency,
        num_requests=summary.completed + summary.failed,
        throughput_rps=summary.throughput_rps,
        ttft_ms_p50=summary.ttft_ms.p50,
        tpot_ms_p50=summary.tpot_ms.p50,
        gpu_name=str(gpus[0]) if gpus else None,
        vllm_version=result.versions.get("vllm"),
    )


def _shown(path: Path) -> str:
    """Relative to the working directory when under it (reports stay readable), else absolute."""
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _trial_record(path: Path) -> dict[str, Any] | None:
    record = path.parent / "trial.json"
    if path.name not in ("result.json", "result.json.gz") or not record.is_file():
        return None
    try:
        data = json.loads(record.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _is_simulated(result: BenchResult, trial: dict[str, Any] | None) -> bool:
    server = result.server_config or {}
    provenance = server.get("provenance") or {}
    return bool(
        result.simulated
        or server.get("engine") == EngineKind.SIMULATED.value
        or provenance.get("simulated")
        or (trial is not None and (trial.get("simulated") or trial.get("engine") == EngineKind.SIMULATED.value))
    )


def _engine_config(path: Path, result: BenchResult) -> EngineConfig:
    server = result.server_config or {}
    if isinstance(server.get("engine_config"), dict):
        try:
            return EngineConfig.model_validate(server["engine_config"])
        except ValidationError as exc:
            raise _Skip("no_config", "server_config.engine_config: " + format_validation_error(exc)) from None
    beside = path.parent / "config.yaml"
    if beside.is_file():
        try:
            tuned = load_tuned_config(beside)
        except ConfigError as exc:
            raise _Skip("no_config", str(exc)) from None
        if tuned.engine is EngineKind.SIMULATED or tuned.provenance.simulated:
            raise _Skip("simulated", f"{beside}: the simulated engine")
        return tuned.engine_config
    raise _Skip("no_config", "no server_config in the result (not our server) and no config.yaml beside it")
