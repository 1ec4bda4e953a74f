"""Result and load models of a benchmark run: the contract between `autotune bench` and the tuner.

A result is one JSON file: what was measured (workload, load, server config), on what
(hardware, versions), per-request records and a summary. `summary` field names carry units.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from autotune.base_models import ClosedModel
from autotune.observe.cpu import ServerCpuProfile
from autotune.observe.gpu import GpuSummary


class SLO(ClosedModel):
    """Latency objectives; a request is 'good' when it meets every one that is set (as vllm bench --goodput)."""

    ttft_ms: Annotated[float, Field(gt=0)] | None = None
    tpot_ms: Annotated[float, Field(gt=0)] | None = None
    e2el_ms: Annotated[float, Field(gt=0)] | None = None


class LoadSpec(ClosedModel):
    """How requests are sent: closed loop at `concurrency`, open loop at `rate_rps`, a rate sweep, or
    `slo_rate`: the highest open-loop rate whose steady-state window meets the SLO's p99s without falling behind
    (a capacity probe at `concurrency`, bounded by `num_requests`/`duration_s`, then rates at `slo_rate_fractions` of
    that capacity, highest first; when the highest passes, rates at `slo_rate_above`, lowest first, until one fails;
    then bisection until the passing and the failing rate lie within `slo_rate_tolerance`). With `slo_rate_bracket`
    the probe is skipped and the bisection starts from that bracket. Each slo_rate window is a steady-state window
    (`autotune.bench.steady`): sized from the workload's latency unless `slo_rate_window_s` fixes its length;
    `num_requests`/`duration_s` do not size it. Or `replay`: a trace workload's requests at the trace's own times,
    scaled by `time_scale` (docs/traces.md)."""

    mode: Literal["concurrency", "rate", "sweep", "slo_rate", "replay"]
    concurrency: Annotated[int, Field(ge=1)] | None = None
    rate_rps: Annotated[float, Field(gt=0)] | None = None
    arrival: Literal["poisson", "constant"] = "poisson"
    num_requests: Annotated[int, Field(ge=1)] | None = 200
    duration_s: Annotated[float, Field(gt=0)] | None = None
    time_scale: Annotated[float, Field(gt=0, allow_inf_nan=False)] = Field(
        default=1.0,
        description="replay: send times are the trace's times x time_scale (0.5 replays twice as fast, 2 at half speed)",
    )
    warmup_requests: Annotated[int, Field(ge=0)] = 0
    client_processes: Annotated[int, Field(ge=1, le=64)] | None = Field(
        default=None, description="None: chosen from the load"
    )
    client_cpus: list[int] | None = Field(default=None, description="CPU cores the client processes are pinned to")
    seed: int = 0
    first_request: Annotated[int, Field(ge=0)] = Field(
        default=0,
        description="The first request index of the seed's block this run sends (0: its start). A run that follows "
        "another of the same seed on the same server starts at that run's `next_request` (the tuner's full "
        "measurement after its screening), so no request reaches the server twice",
    )
    reset_caches: bool = Field(
        default=False,
        description="Reset the server's prefix, multimodal and encoder caches before every measured window (vLLM: "
        "needs VLLM_SERVER_DEV_MODE=1). A dataset workload then needs only as many lines as one window sends",
    )
    sweep_max_rate_rps: Annotated[float, Field(gt=0)] | None = None
    sweep_steps: Annotated[int, Field(ge=2, le=50)] = 6
    slo_rate_fractions: list[Annotated[float, Field(gt=0, le=1.5)]] = Field(
        default_factory=lambda: [0.95, 0.85, 0.7, 0.55, 0.4, 0.25],
        description="slo_rate: offered rates as fractions of the probed capacity, tried highest first",
    )
    slo_rate_above: list[Annotated[float, Field(gt=0, le=3)]] = Field(
        default_factory=list,
        description="slo_rate: fractions of the probed capacity to try upwards when the highest of slo_rate_fractions "
        "already passes (a low probe would otherwise cap the result)",
    )
    slo_rate_refine_steps: Annotated[int, Field(ge=0, le=12)] | None = Field(
        default=None,
        description="slo_rate: at most this many bisection windows (each halves the gap between the passing and the "
        "failing rate); None: as many as slo_rate_tolerance needs. Space files written before slo_rate_tolerance "
        "set 1 or 2 here, which caps the search above the tolerance",
    )
    slo_rate_tolerance: Annotated[float, Field(gt=0, le=0.5)] = Field(
        default=0.05,
        description="slo_rate: bisect until the lowest failing rate is within this fraction above the highest passing "
        "one (0.05: the reported rate is at most 5% below the bracket's failing end)",
    )
    slo_rate_bracket: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]] | None = Field(
        default=None,
        description="slo_rate: [low, high] req/s believed to bracket the answer (low meets the SLO, high does not): "
        "no capacity probe, bisection from this bracket; an end is tested only when the search converges onto it, "
        "and the bracket grows (x2 up, /2 down) when that end turns out wrong",
    )
    slo_rate_window_s: Annotated[float, Field(gt=0)] | None = Field(
        default=None,
        description="slo_rate: fixed sending time of every window in seconds (ramp + steady part; the drain comes "
        "after). None: each window is sized from the workload's latency (ramp, steady minimums below)",
    )
    slo_rate_min_steady_s: Annotated[float, Field(gt=0)] = Field(
        default=30.0, description="slo_rate, sized windows: the steady part lasts at least this many seconds"
    )
    slo_rate_min_completions: Annotated[int, Field(ge=1)] = Field(
        default=600,
        description="slo_rate, sized windows: the steady part sends at least this many requests at the window's rate "
        "(enough for a stable p99)",
    )
    slo_rate_ramp_latencies: Annotated[float, Field(ge=0)] = Field(
        default=2.0,
        description="slo_rate: the ramp left out at the start of a window, in latency scales (E2E p90, see "
        "autotune.bench.steady); at most a quarter of the window",
    )
    slo_rate_steady_latencies: Annotated[float, Field(ge=0)] = Field(
        default=10.0,
        description="slo_rate, sized windows: the steady part lasts at least this many latency scales (long outputs: "
        "long windows, so a growing queue shows over the requests' own duration)",
    )
    slo_rate_max_backlog_growth_s: Annotated[float, Field(gt=0)] = Field(
        default=2.0,
        description="slo_rate: a window falls behind when its backlog (sent minus ended) grows over the steady part "
        "by more than this many seconds of arrivals at its rate (or 3% of the steady part's sends, whichever is more)",
    )

    @model_validator(mode="after")
    def _check_mode(self) -> LoadSpec:
        if self.mode == "concurrency" and self.concurrency is None:
            raise ValueError("mode 'concurrency' needs concurrency")
        if self.mode == "rate" and self.rate_rps is None:
            raise ValueError("mode 'rate' needs rate_rps")
        if self.mode == "slo_rate" and not self.slo_rate_fractions:
            raise ValueError("mode 'slo_rate' needs at least one of slo_rate_fractions")
        if self.slo_rate_above and self.slo_rate_fractions and min(self.slo_rate_above) <= max(self.slo_rate_fractions):
            raise ValueError(
                f"slo_rate_above {self.slo_rate_above} must lie above the highest of slo_rate_fractions "
                f"({max(self.slo_rate_fractions)})"
            )
        if self.slo_rate_bracket is not None and not self.slo_rate_bracket[0] < self.slo_rate_bracket[1]:
            low, high = self.slo_rate_bracket
            raise ValueError(f"slo_rate_bracket: low must be below high (got {low:g}:{high:g})")
        if self.num_requests is None and self.duration_s is None and self.mode != "replay":  # a trace ends by itself
            raise ValueError("set num_requests or duration_s (a run must be bounded)")
        if self.time_scale != 1.0 and self.mode != "replay":
            raise ValueError(f"time_scale applies to mode 'replay' only (got mode {self.mode!r})")
        return self

    def warmup(self, requests: int) -> LoadSpec:
        """The warm-up run before this load is measured: `requests` closed-loop requests, one client process, at this
        load's concurrency (at most 8 when it has none), with seed + 1 so no warm-up request repeats a measured one."""
        return LoadSpec(
            mode="concurrency",
            concurrency=max(1, min(self.concurrency or 8, requests)),
            num_requests=requests,
            warmup_requests=0,
            seed=self.seed + 1,
            client_processes=1,
        )


class Stats(ClosedModel):
    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None


class DiscardedAttempt(ClosedModel):
    """A measurement of this window thrown away because its client saturated (it was run again with more processes)."""

    processes: int
    reason: str


class ClientHealth(ClosedModel):
    """The load generator watching itself: a saturated client does not measure the server."""

    processes: int = 1
    cpu_util_max: float | None = Field(default=None, description="Busiest client process, fraction of one core")
    loop_lag_p99_ms: float | None = None
    send_lag_p99_ms: float | None = Field(default=None, description="Open loop: how late requests left vs their schedule")
    saturated: bool = False
    reason: str | None = None
    planned_core_share: float | None = Field(
        default=None,
        description="The share of one core each client process was planned to use at this load (from the measured "
        "client cost, see client_capacity.py); None when the process count was given or the loop is closed",
    )
    max_processes: int | None = Field(default=None, description="The most client processes this window could use")
    discarded_attempts: list[DiscardedAttempt] = Field(
        default_factory=list, description="Earlier measurements of this window with a saturated client, not used"
    )


class CacheHits(ClosedModel):
    """The server's prefix- and multimodal-cache hit rates over a window (from /metrics) against what the workload
    declares it shares. A window whose hit rate exceeds the declared sharing by more than `CACHE_HIT_TOLERANCE` is
    cache-flattered: a request reached the server twice, so it looks faster than real traffic; it is never used as
    an objective value."""

    prefix_hit_rate: float | None = Field(default=None, description="prefix_cache_hits / prefix_cache_queries (tokens)")
    mm_hit_rate: float | None = Field(default=None, description="mm_cache_hits / mm_cache_queries (images)")
    prefix_declared: float = Field(default=0.0, description="The workload's declared prefix sharing (0..1)")
    mm_declared: float = Field(default=0.0, description="The workload's declared image sharing (0..1)")
    reset_before: bool = Field(default=False, description="The server's caches were reset just before the window")
    flattered: bool = False
    reason: str | None = None


class SteadyWindow(ClosedModel):
    """How one slo_rate window was cut into ramp, steady part and drain, and its verdict (autotune.bench.steady).

    Times are seconds from the window's first scheduled send. The figures of the summary holding this are those of
    the steady requests only (sent in [ramp_s, send_s)).
    """

    sized: bool = Field(description="True: length sized from the latency scale; False: fixed by slo_rate_window_s")
    latency_scale_s: float | None = Field(default=None, description="E2E p90 the ramp and drain were sized from")
    latency_source: Literal["probe", "earlier window", "this window"] = Field(
        description="probe: the capacity probe's E2E p90; earlier window: the steady E2E p90 of the highest rate that "
        "passed so far (no probe); this window: the E2E p90 of this window's own first quarter"
    )
    send_s: float = Field(description="Sending time of the ramp and the steady part (the drain sends after it)")
    ramp_s: float = Field(description="Requests sent before this are the ramp: load, not measured")
    steady_s: float = Field(description="Length of the steady part: send_s - ramp_s")
    drain_limit_s: float = Field(description="After send_s, the longest wait for the requests sent before it")
    drain_s: float = Field(description="How long after send_s the last request sent before it ended (or was cut)")
    ramp_requests: int = 0
    steady_requests: int = 0
    drain_requests: int = Field(default=0, description="Sent after send_s to keep the load up while the steady part ends")
    unfinished: int = Field(default=0, description="Steady requests still streaming at the drain limit (counted failed)")
    backlog_start: float = Field(description="Requests in flight at the steady part's start (least-squares line)")
    backlog_end: float = Field(description="Requests in flight at the steady part's end (the same line)")
    backlog_growth: float = Field(description="backlog_end - backlog_start: > 0 means the queue grew")
    backlog_growth_limit: float = Field(description="The growth above which the window falls behind")
    fell_behind: bool = Field(
        default=False, description="The backlog grew above its limit (False in results written before this field)"
    )
    met: bool = Field(description="The window met the SLO's p99s and kept pace with its rate")
    verdict: str = Field(description="Why it missed the SLO, or 'met'")


class Summary(ClosedModel):
    offered_rate_rps: float | None = Field(default=None, description="Open loop: the scheduled request rate")
    concurrency: int | None = Field(default=None, description="Closed loop: the number of concurrent streams")
    completed: int = 0
    failed: int = 0
    duration_s: float = 0.0
    throughput_rps: float = 0.0
    output_tok_s: float = 0.0
    input_tok_s: float = 0.0
    goodput_rps: float | None = None
    slo_rate_rps: float | None = Field(
        default=None, description="slo_rate mode: the highest offered rate meeting the SLO's p99s (0: none did)"
    )
    slo_rate_censored: bool | None = Field(
        default=None,
        description="slo_rate mode: no rate tried above slo_rate_rps failed, so the true value may be higher (a lower "
        "bound); None outside slo_rate mode",
    )
    slo_rate_failed_rps: float | None = Field(
        default=None,
        description="slo_rate mode: the lowest rate tried that missed the SLO (the bracket's upper end); None when none "
        "missed (slo_rate_censored) or outside slo_rate mode",
    )
    steady: SteadyWindow | None = Field(
        default=None, description="slo_rate windows: ramp, steady part, drain, backlog and verdict"
    )
    error_rate: float = 0.0
    ttft_ms: Stats = Field(default_factory=Stats)
    tpot_ms: Stats = Field(default_factory=Stats)
    itl_ms: Stats = Field(default_factory=Stats)
    e2el_ms: Stats = Field(default_factory=Stats)
    gpu: GpuSummary | None = None
    server: dict[str, float] = Field(default_factory=dict, description="Scraped from /metrics when present")
    server_cpu: ServerCpuProfile | None = Field(
        default=None, description="CPU use of the server's processes by role over the window (when its pid is known)"
    )
    client: ClientHealth = Field(default_factory=ClientHealth)
    cache: CacheHits | None = Field(
        default=None, description="Prefix/multimodal cache hit rates vs the workload's declared sharing (None: not checked)"
    )


class RequestRecord(ClosedModel):
    """One request; failures are data (error set, success False), never exceptions."""

    index: int
    send_time_s: float = Field(description="Seconds since the start of the run")
    success: bool
    ttft_ms: float | None = None
    e2el_ms: float | None = None
    itl_ms: list[float] = Field(default_factory=list)
    input_tokens: int | None = None
    output_tokens: int | None = None
    error: str | None = None
    warmup: bool = False
    phase: int = Field(default=0, description="Sweep: 0 the max-throughput run, 1.. the rates; else 0")
    window_part: Literal["ramp", "steady", "drain"] | None = Field(
        default=None,
        description="slo_rate windows: which part of the window sent it; only steady requests are measured",
    )
    unfinished: bool = Field(
        default=False,
        description="Still streaming when its window stopped waiting (drain limit, or a drain request once the steady "
        "ones had ended): cancelled, success False",
    )


class BenchResult(ClosedModel):
    kind: Literal["autotune-bench-result"] = "autotune-bench-result"
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    url: str
    workload: dict[str, Any]
    load: LoadSpec
    slo: SLO = Field(default_factory=SLO)
    server_config: dict[str, Any] | None = Field(default=None, description="From /autotune/config when the server is ours")
    simulated: bool = Field(default=False, description="True when the server reported the simulated engine")
    versions: dict[str, str] = Field(default_factory=dict)
    hardware: dict[str, Any] = Field(default_factory=dict)
    summary: Summary
    requests: list[RequestRecord] = Field(default_factory=list)
    gpu_timeseries: list[dict[str, float]] = Field(default_factory=list)
    server_cpu_timeseries: list[dict[str, float]] = Field(
        default_factory=list, description="Cores used by server role per sampling interval (when its pid is known)"
    )
    sweep: list[Summary] = Field(
        default_factory=list, description="One summary per rate in sweep mode; the probe and each rate tried in slo_rate mode"
    )
    window_start_unix_s: float | None = Field(
        default=None, description="Wall-clock time (Unix s) of the first measured window's start: requests' send_time_s count from it"
    )
    next_request: int | None = Field(
        default=None, description="The first request index of the seed's block this run did not send (`first_request` "
        "plus every request it prepared, warm-up and unsent ones included): where a later run of the same seed on the "
        "same server starts"
    )
