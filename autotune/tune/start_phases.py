"""A trial's start split into phases, read from its server log, and whether vLLM's compile cache served it.

The server log (`trials/N/server.log`) holds our launcher's lines (`YYYY-MM-DD hh:mm:ss,mmm INFO autotune.serve:
...`, full date, milliseconds) and vLLM 0.24's (`(EngineCore pid=5833) INFO 11-26 05:50:51 [core.py:114] ...`, no
year, whole seconds). Each phase runs from one mark to the next:

| phase            | from                                   | to                                                |
|------------------|----------------------------------------|---------------------------------------------------|
| launcher_s       | the trial starts the server process    | `autotune.serve: starting vLLM` (our launcher and the imports it triggers: with the vLLM engine, vLLM, torch and transformers through serving.vllm_middleware) |
| api_server_s     | `starting vLLM`                        | the first `Initializing a V1 LLM engine` (vLLM's CLI, API-server processes, tokenizer and processor) |
| engine_core_s    | the first engine core initializing     | the first `Starting to load model` (workers, device, distributed set-up) |
| model_load_s     | the first `Starting to load model`     | the last `Model loading took` (every engine)      |
| engine_init_s    | the last `Model loading took`          | the last `init engine (profile, create kv cache, warmup model) took` |
| after_engine_s   | the last engine ready                  | the server answers `/health` (API servers' multimodal warm-up, routes) |

`torch_compile_s` (`torch.compile took X s in total`) and `cuda_graphs_s` (`Graph capturing finished in X secs`)
are vLLM's own figures, inside `engine_init_s`: the longest of the engine processes. The compile cache is a hit when
every compiled graph was loaded from it (`Directly load the compiled graph(s) ...`), a miss when every one was
compiled (`Compiling a graph for compile range ...`), partial when both, disabled when vLLM says so; `compile_keys`
are the cache folders vLLM used (`torch_compile_cache/<key>/`, one per compile key). Phases from vLLM's lines have a
resolution of one second; a mark missing from the log (a start that failed, the simulated engine) leaves its phases
None. The marks' patterns are taken from vLLM 0.24's source (v1/engine/core.py, v1/worker/gpu_model_runner.py,
compilation/backends.py, compilation/monitor.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

# Our launcher's lines (serving/launch.py's format): full date and milliseconds.
_OURS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ autotune\.serve: (.*)$")
# vLLM's lines, behind an optional "(EngineCore_DP0 pid=1) " prefix: month-day and whole seconds.
_VLLM = re.compile(r"(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) (\d\d-\d\d \d\d:\d\d:\d\d) \[[^\]]+\] (.*)$")
_VLLM_STARTED = "starting vLLM"

FIRST_MARKS = {  # mark -> what starts vLLM's line (its first occurrence)
    "engine_core_started": "Initializing a V1 LLM engine",
    "model_load_started": "Starting to load model",
    "mm_warmup_done": "Multi-modal warmup completed",
    "api_server_ready": "Starting vLLM server on",
}
LAST_MARKS = {  # mark -> what starts vLLM's line (its last occurrence: every engine has reached it)
    "model_loaded": "Model loading took",
    "engine_ready": "init engine (profile, create kv cache, warmup model) took",
}
_COMPILE_S = re.compile(r"^torch\.compile (?:and initial profiling/warmup run together )?took ([\d.]+) s in total")
_GRAPHS_S = re.compile(r"^Graph capturing finished in ([\d.]+) secs")
_CACHE_KEY = re.compile(r"torch_compile_cache/([0-9a-f]{6,64})/")
_CACHE_HIT = ("Directly load the compiled graph(s)", "Directly load AOT compilation")
_CACHE_MISS = ("Compiling a graph for compile range",)
_CACHE_DISABLED = "vLLM's torch.compile cache is disabled"

PHASES = ("launcher_s", "api_server_s", "engine_core_s", "model_load_s", "engine_init_s", "after_engine_s")
_PHASE_BOUNDS = {  # phase -> (mark it starts at, mark it ends at)
    "launcher_s": ("started", "vllm_started"),
    "api_server_s": ("vllm_started", "engine_core_started"),
    "engine_core_s": ("engine_core_started", "model_load_started"),
    "model_load_s": ("model_load_started", "model_loaded"),
    "engine_init_s": ("model_loaded", "engine_ready"),
    "after_engine_s": ("engine_ready", "ready"),
}
METRIC_PREFIX = "start_"


class CompileCache(StrEnum):
    HIT = "hit"
    MISS = "miss"
    PARTIAL = "partial"
    DISABLED = "disabled"


class StartPhases(BaseModel):
    """Seconds of each start phase (None: a mark was not in the log), vLLM's compile figures and its cache use."""

    model_config = ConfigDict(extra="forbid")

    launcher_s: float | None = Field(
        default=None, description="Process start -> `vllm serve` called (our launcher, and the vLLM import it triggers)"
    )
    api_server_s: float | None = Field(default=None, description="`vllm serve` called -> the first engine core starts")
    engine_core_s: float | None = Field(default=None, description="Engine core starts -> model load starts")
    model_load_s: float | None = Field(default=None, description="Model load starts -> every engine's model loaded")
    engine_init_s: float | None = Field(
        default=None, description="Model loaded -> every engine ready (memory profile, torch.compile, KV cache, CUDA graphs)"
    )
    after_engine_s: float | None = Field(default=None, description="Every engine ready -> the server answers /health")
    total_s: float | None = Field(default=None, description="Process start -> the server answers /health")
    torch_compile_s: float | None = Field(default=None, description="vLLM's 'torch.compile took', longest engine")
    cuda_graphs_s: float | None = Field(default=None, description="vLLM's 'Graph capturing finished in', longest engine")
    engines: int = Field(default=0, description="Engine cores that started (`Initializing a V1 LLM engine` lines)")
    compile_cache: CompileCache | None = Field(default=None, description="None: nothing was compiled or loaded")
    compile_keys: list[str] = Field(default_factory=list, description="vLLM's compile-cache folders (one per key)")

    def metrics(self) -> dict[str, float]:
        """Flat figures for MLflow and tables: `start_<phase>_s`, `start_engines`, `start_compile_cache_hit` (1/0)."""
        figures = {
            f"{METRIC_PREFIX}{name}": value
            for name in (*PHASES, "total_s", "torch_compile_s", "cuda_graphs_s")
            if (value := getattr(self, name)) is not None
        }
        if self.engines:
            figures[f"{METRIC_PREFIX}engines"] = float(self.engines)
        if self.compile_cache in (CompileCache.HIT, CompileCache.MISS):
            figures[f"{METRIC_PREFIX}compile_cache_hit"] = 1.0 if self.compile_cache is CompileCache.HIT else 0.0
        return figures


@dataclass
class LogMarks:
    """Wall-clock times of the start marks of one server log (first and last occurrence) and vLLM's figures."""

    first: dict[str, datetime] = field(default_factory=dict)
    last: dict[str, datetime] = field(default_factory=dict)
    compile_s: list[float] = field(default_factory=list)
    graphs_s: list[float] = field(default_factory=list)
    engines: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    cache_disabled: bool = False
    compile_keys: list[str] = field(default_factory=list)

    def _mark(self, name: str, when: datetime) -> None:
        self.first.setdefault(name, when)
        self.last[name] = when


def read_marks(text: str, *, year: int | None = None) -> LogMarks:
    """The start marks of a server log. vLLM's stamps have no year: the launcher's first line gives it (else `year`,
    else this year); a stamp that would fall well before the launcher's start belongs to the next year."""
    marks = LogMarks()
    origin: datetime | None = None
    for line in text.splitlines():
        ours = _OURS.search(line)
        if ours is not None:
            when = datetime.strptime(ours.group(1), "%Y-%m-%d %H:%M:%S,%f")
            origin = origin or when
            marks._mark("launcher", when)
            if ours.group(2).startswith(_VLLM_STARTED):
                marks._mark("vllm_started", when)
            continue
        vllm = _VLLM.search(line)
        if vllm is None:
            continue
        stamp, message = vllm.groups()
        when = _vllm_time(stamp, origin, year)
        marks._mark("vllm_first_line", when)
        for name, start in FIRST_MARKS.items():
            if message.startswith(start):
                marks.first.setdefault(name, when)
        for name, start in LAST_MARKS.items():
            if message.startswith(start):
                marks.last[name] = when
                marks.first.setdefault(name, when)
        _read_figures(message, marks)
    return marks


def _vllm_time(stamp: str, origin: datetime | None, year: int | None) -> datetime:
    base_year = origin.year if origin is not None else (year or datetime.now().year)
    when = datetime.strptime(f"{base_year}-{stamp}", "%Y-%m-%d %H:%M:%S")
    if origin is not None and when < origin - timedelta(days=180):  # a start across New Year
        when = when.replace(year=base_year + 1)
    return when


def _read_figures(message: str, marks: LogMarks) -> None:
    if message.startswith(FIRST_MARKS["engine_core_started"]):
        marks.engines += 1
    if (found := _COMPILE_S.search(message)) is not None:
        marks.compile_s.append(float(found.group(1)))
    if (found := _GRAPHS_S.search(message)) is not None:
        marks.graphs_s.append(float(found.group(1)))
    if message.startswith(_CACHE_HIT):
        marks.cache_hits += 1
    if message.startswith(_CACHE_MISS):
        marks.cache_misses += 1
    if message.startswith(_CACHE_DISABLED):
        marks.cache_disabled = True
    if message.startswith("Using cache directory:") and (found := _CACHE_KEY.search(message)) is not None:
        if found.group(1) not in marks.compile_keys:
            marks.compile_keys.append(found.group(1))


def start_phases(text: str, *, started_at: datetime | None = None, ready_at: datetime | None = None) -> StartPhases:
    """The phases of one start. `started_at`/`ready_at`: when the trial started the process and when `/health`
    answered (local wall clock, as the log's stamps); without them the launcher's first line and vLLM's
    `Starting vLLM server on` stand in."""
    marks = read_marks(text, year=started_at.year if started_at else None)
    times: dict[str, datetime] = {**marks.first, **{name: marks.last[name] for name in LAST_MARKS if name in marks.last}}
    start = started_at or marks.first.get("launcher")
    if start is not None:
        times["started"] = start
    if "vllm_started" not in times and "vllm_first_line" in times:  # vLLM started by something other than our launcher
        times["vllm_started"] = times["vllm_first_line"]
    ready = ready_at or times.get("api_server_ready")
    if ready is not None:
        times["ready"] = ready
    phases: dict[str, float | None] = {name: _seconds(times, *_PHASE_BOUNDS[name]) for name in PHASES}
    return StartPhases(
        **phases,
        total_s=_seconds(times, "started", "ready"),
        torch_compile_s=max(marks.compile_s, default=None),
        cuda_graphs_s=max(marks.graphs_s, default=None),
        engines=marks.engines,
        compile_cache=_cache_use(marks),
        compile_keys=marks.compile_keys,
    )


def _seconds(times: dict[str, datetime], start: str, end: str) -> float | None:
    if start not in times or end not in times:
        return None
    return round(max(0.0, (times[end] - times[start]).total_seconds()), 3)


def _cache_use(marks: LogMarks) -> CompileCache | None:
    if marks.cache_hits and marks.cache_misses:
        return CompileCache.PARTIAL
    if marks.cache_hits:
        return CompileCache.HIT
    if marks.cache_misses:
        return CompileCache.MISS
    return CompileCache.DISABLED if marks.cache_disabled else None


def start_phases_of_file(path: Path, *, started_at: datetime | None = None, ready_at: datetime | None = None) -> StartPhases | None:
    """`start_phases` of a log file (gzip too); None when it cannot be read."""
    import gzip

    try:
        data = path.read_bytes()
    except OSError:
        return None
    text = (gzip.decompress(data) if path.suffix == ".gz" else data).decode(errors="replace")
    return start_phases(text, started_at=started_at, ready_at=ready_at)
