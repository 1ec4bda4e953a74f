"""What one trial leaves (`TrialResult`: its state, reason, measurements, timings) and what it needs of a running
server (`ServerHandle`) and of whoever watches it (`TrialObserver`)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from autotune.bench.schemas import Summary
from autotune.config import EngineKind
from autotune.memory_model import MemoryEstimate
from autotune.tune.start_phases import StartPhases


class TrialOutcome(StrEnum):
    COMPLETE = "complete"
    FAILED = "failed"
    REJECTED = "rejected"
    PRUNED = "pruned"  # served and screened, then stopped: its screening value cannot reach the best


class TrialTimings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    startup_s: float | None = None
    warmup_s: float | None = None
    screening_s: float | None = None
    measure_s: float | None = None
    stop_s: float | None = None
    total_s: float = 0.0


class TrialResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: int
    state: TrialOutcome
    reason: str | None = None
    engine: EngineKind
    simulated: bool
    config_hash: str
    trial_dir: str
    config_path: str | None = None
    result_path: str | None = None
    log_path: str | None = None
    log_tail: str | None = None
    summary: Summary | None = None
    peak_summary: Summary | None = Field(
        default=None,
        description="The window of highest throughput when the run had several (slo_rate's capacity probe, a sweep's "
        "top): where a saturated process shows, unlike the reported window below saturation",
    )
    stack_metrics: dict[str, float] = Field(
        default_factory=dict,
        description="From the server's stack profile (--stack-profile-hz): where the engine core's main thread and the "
        "API servers spent the reported window (`stack_*`) and the capacity probe (`peak_stack_*`)",
    )
    memory: MemoryEstimate | None = None
    gpu_memory_released: bool | None = Field(default=None, description="None: not checked (no NVML)")
    gpu_memory_before_mib: float | None = Field(default=None, description="GPU memory in use before the server started")
    gpu_memory_after_mib: float | None = Field(
        default=None, description="GPU memory in use once the server was gone (the release wait's last reading)"
    )
    timings: TrialTimings = Field(default_factory=TrialTimings)
    start_phases: StartPhases | None = Field(default=None, description="The start's phases from the server log")
    compile_cache_root: str | None = Field(default=None, description="VLLM_CACHE_ROOT given to the server")
    warm_start: bool | None = Field(
        default=None, description="True: the server was forked from the warm parent; False: started cold (see "
        "cold_start_reason); None: warm start off (--warm-start)"
    )
    cold_start_reason: str | None = Field(default=None, description="Why a trial of a warm-start study started cold")
    screening_summary: Summary | None = Field(default=None, description="The screening measurement (fidelity)")
    full_measurement_bracket: tuple[float, float] | None = Field(
        default=None, description="The screening's bracket (met, missed req/s) the full measurement started from")
    screening_next_request: int | None = Field(
        default=None, description="The first request index the screening did not send: the full measurement starts "
        "there (`load.first_request`), so that none of the screening's requests reaches the server again")
    server_cpus: list[int] | None = Field(default=None, description="CPU cores the server was pinned to (None: not pinned)")
    client_cpus: list[int] | None = Field(default=None, description="CPU cores the load generator was pinned to")


class ServerHandle(Protocol):
    """What a trial needs of a running server (autotune.tune.server_process.ServerProcess)."""

    base_url: str
    pid: int
    pgid: int

    def alive(self) -> bool: ...
    def log_tail(self, lines: int = 50) -> str: ...
    def stop(self, timeout_s: float = 30) -> Any: ...


class TrialObserver(Protocol):
    def server_started(self, number: int, server: ServerHandle) -> None: ...
    def phase(self, number: int, name: str) -> None: ...


class NullObserver:
    def server_started(self, number: int, server: ServerHandle) -> None:
        pass

    def phase(self, number: int, name: str) -> None:
        pass
