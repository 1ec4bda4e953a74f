"""Profile-guided trials: what the defaults trial's CPU profile says to try first.

vLLM's defaults can stall with the GPU half idle while the one API-server process sits at a full core
(frontend-bound) and most of the server's cores are idle (experiments/h100-qwen3-vl-4b/README.md, "Measurements the
code relies on", has the runs these rules and their thresholds come from). A sampler starting from random points
takes many trials to isolate such a single cause. So once the defaults trial is measured, its profile (the
`server_cpu_*` metrics) is read against a few rules. Each rule that holds queues one trial: the defaults with that
one change, in the space's own terms. A frontend at a full core calls for more API servers and, where the space tunes
vLLM's `stream_interval`, for tokens streamed in chunks (less work per token in the API server): one trial each. The
change is tried only if the space tunes that field, with the smallest of its values at API_SERVER_GROWTH x the default
or above (else the largest above the default). Guided trials have no sampler params (like the defaults trial): they
compete for best and show the effect of one change.

With a stack profile (`--stack-profile-hz`, the `stack_*` metrics) a second rule reads the engine core: its one
thread can be never idle, a large share of it in the vision encoder, run eagerly. When the defaults' engine core is
that busy and the space tunes vLLM's `compilation_config.cudagraph_mm_encoder`, the defaults with the encoder in CUDA
graphs are queued. When the engine core is that busy (whatever it runs) and the space tunes `engines_per_gpu`, the
defaults with a second engine core on the same GPU are queued too: that thread is the limit, and a second one is the
direct test.

Every rule above pulls a CPU-side lever, which can only raise the rate while the GPU has work left to give. So they
are read against the GPU's SM activity (NVML GPM, `gpu_sm_active_mean`, the probe's or the reported window's,
whichever is higher): where the SMs were active GPU_SATURATED_SM_ACTIVE_PCT of the time or more the GPU is the limit
and no CPU-side trial is queued. NVML's utilization is not that reading: it is the share of time any kernel ran, and
reads 99% while 52-70% of the SMs work (an H200 serving the Qwen3-VL skeleton). Where GPM is unavailable the guide
falls back to it and says so in the trial's reason; being at most SM activity's upper bound, it can show an idle GPU
but never a saturated one, so it never holds a lever back.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna

from autotune.config import EngineConfig
from autotune.observe.cpu import SINGLE_THREAD_BOUND_CORES
from autotune.observe.gpm import GPM_UNAVAILABLE, NVML_BUSY_LABEL, SM_ACTIVE_LABEL
from autotune.observe.names import (
    FRONTEND_METRIC,
    GPM_AVAILABLE_METRIC,
    NVML_BUSY_METRIC,
    PEAK_PREFIX,
    SM_ACTIVE_METRIC,
    peak_metric,
    stack_engine_core_share,
)
from autotune.space import InvalidTrialConfig, SearchSpace, set_path
from autotune.tune import attrs

log = logging.getLogger(__name__)

ENCODER_GRAPHS_FIELD = "extra_engine_args.compilation_config.cudagraph_mm_encoder"
STREAM_INTERVAL_ARG = "stream_interval"
STREAM_INTERVAL_FIELD = f"extra_engine_args.{STREAM_INTERVAL_ARG}"
"""vLLM 0.24's `--stream-interval` (SchedulerConfig.stream_interval, default 1): the output processor hands a request's
tokens to its API server in chunks of that many, the first and the last at once; not part of the compile key."""
ENGINE_CORE_IDLE_MAX = 0.05
"""Engine core busy: its main thread waits for requests in fewer samples than this."""
VISION_ENCODER_MIN = 0.2
"""...and runs the vision encoder in at least this share of them."""

IDLE_SHARE = stack_engine_core_share("idle")
VISION_ENCODER_SHARE = stack_engine_core_share("vision_encoder")

ENGINES_PER_GPU_FIELD = "engines_per_gpu"
SECOND_ENGINE = 2

API_SERVER_GROWTH = 4
"""Frontend-bound: this many times the API servers (or the space's largest choice below it): the load spreads
thinly over API servers, so a doubling would leave little headroom."""


GPU_SATURATED_SM_ACTIVE_PCT = 90.0
"""GPU-bound: SMs active (GPM) this share of the time or more; below it a CPU-side lever can raise the rate."""


@dataclass(frozen=True, slots=True)
class Guidance:
    overrides: dict[str, Any]  # engine field (dotted) -> value, applied to the defaults config
    why: str


@dataclass(frozen=True, slots=True)
class GpuActivity:
    """What the defaults' GPU did, as the guide reads it."""

    pct: float | None
    source: str  # SM_ACTIVE_LABEL, or NVML_BUSY_LABEL where GPM is unavailable; "" without GPU figures
    saturated: bool

    @property
    def text(self) -> str:
        if self.pct is None:
            return "no GPU activity measured"
        if self.source == SM_ACTIVE_LABEL:
            return f"GPU {SM_ACTIVE_LABEL} {self.pct:.0f}%"
        return f"GPU {NVML_BUSY_LABEL} {self.pct:.0f}% ({GPM_UNAVAILABLE}: NVML's busy flag, which cannot show saturation)"


def gpu_activity(metrics: Mapping[str, Any]) -> GpuActivity:
    """SM activity (GPM) of the probe or the reported window, whichever is higher; NVML's busy flag only where GPM
    is unavailable (never saturated: it reads ~99% whenever a kernel runs, however few SMs work)."""
    sm_active = _highest(metrics, SM_ACTIVE_METRIC)
    if sm_active is not None:
        return GpuActivity(sm_active, SM_ACTIVE_LABEL, saturated=sm_active >= GPU_SATURATED_SM_ACTIVE_PCT)
    busy = _highest(metrics, NVML_BUSY_METRIC)
    if busy is not None and metrics.get(GPM_AVAILABLE_METRIC) != 1.0:
        return GpuActivity(busy, NVML_BUSY_LABEL, saturated=False)
    return GpuActivity(None, "", saturated=False)


def _highest(metrics: Mapping[str, Any], name: str) -> float | None:
    readings = [metrics.get(peak_metric(name)), metrics.get(name)]
    return max((float(r) for r in readings if isinstance(r, (int, float))), default=None)


def guidance_from_profile(space: SearchSpace, metrics: Mapping[str, Any]) -> list[Guidance]:
    """The single-change trials the defaults' profile calls for (empty when nothing is saturated, or when the GPU
    is: its SMs active GPU_SATURATED_SM_ACTIVE_PCT of the time or more)."""
    found = _cpu_side_guidance(space, metrics)
    gpu = gpu_activity(metrics)
    if found and gpu.saturated:
        log.info("profile guide: %s, the GPU is the limit: not queued: %s", gpu.text, "; ".join(g.why for g in found))
        return []
    return [Guidance(g.overrides, f"{g.why}; {gpu.text}") if gpu.pct is not None else g for g in found]


def _cpu_side_guidance(space: SearchSpace, metrics: Mapping[str, Any]) -> list[Guidance]:
    """The CPU-side levers the server's CPU and stack profile call for."""
    found: list[Guidance] = []
    # the capacity probe (peak_*) is where a saturated frontend shows: at the SLO rate it runs below saturation
    readings = [metrics.get(peak_metric(FRONTEND_METRIC)), metrics.get(FRONTEND_METRIC)]
    frontend = max((r for r in readings if isinstance(r, (int, float))), default=None)
    if frontend is not None and frontend >= SINGLE_THREAD_BOUND_CORES:
        bound = f"the API-server process ran at {frontend:.2f} cores (frontend single-thread bound)"
        current = space.defaults_config().api_server_count or 1
        step_up = _step_up(space, "api_server_count", current)
        if step_up is not None:
            found.append(Guidance({"api_server_count": step_up}, f"{bound}: api_server_count {current} -> {step_up}"))
        interval = int(space.defaults_config().extra_engine_args.get(STREAM_INTERVAL_ARG, 1))
        longer = _step_up(space, STREAM_INTERVAL_FIELD, interval)
        if longer is not None:
            found.append(Guidance(
                {STREAM_INTERVAL_FIELD: longer},
                f"{bound}: stream_interval {interval} -> {longer} (each API server sends a request's tokens in chunks of "
                f"{longer}, the first at once)",
            ))
    busy = _engine_core_busy(metrics)
    if busy is not None and space.defaults_config().engines_per_gpu == 1 and _tunes_value(space, ENGINES_PER_GPU_FIELD, SECOND_ENGINE):
        found.append(
            Guidance(
                {ENGINES_PER_GPU_FIELD: SECOND_ENGINE},
                f"the engine core's thread was idle in {100 * busy:.0f}% of samples: a second engine core on the "
                f"same GPU (engines_per_gpu {SECOND_ENGINE})",
            )
        )
    if (encoder := _encoder_bound(metrics)) is not None and _tunes_value(space, ENCODER_GRAPHS_FIELD, True):
        idle, share = encoder
        found.append(
            Guidance(
                {ENCODER_GRAPHS_FIELD: True},
                f"the engine core's thread was idle in {100 * idle:.0f}% of samples and ran the vision encoder in "
                f"{100 * share:.0f}%: the encoder captured in CUDA graphs (cudagraph_mm_encoder)",
            )
        )
    return found


def _engine_core_busy(metrics: Mapping[str, Any]) -> float | None:
    """The engine core thread's idle share, reported window or probe, when it is at most ENGINE_CORE_IDLE_MAX;
    None otherwise or without a stack profile."""
    for prefix in ("", PEAK_PREFIX):
        idle = metrics.get(prefix + IDLE_SHARE)
        if isinstance(idle, (int, float)) and idle <= ENGINE_CORE_IDLE_MAX:
            return float(idle)
    return None


def _encoder_bound(metrics: Mapping[str, Any]) -> tuple[float, float] | None:
    """(idle share, vision-encoder share) of the engine core's thread, reported window or probe, when it is busy
    and the encoder is a large part of it; None otherwise or without a stack profile."""
    for prefix in ("", PEAK_PREFIX):
        idle = metrics.get(prefix + IDLE_SHARE)
        share = metrics.get(prefix + VISION_ENCODER_SHARE)
        if isinstance(idle, (int, float)) and isinstance(share, (int, float)):
            if idle <= ENGINE_CORE_IDLE_MAX and share >= VISION_ENCODER_MIN:
                return float(idle), float(share)
    return None


def _tunes_value(space: SearchSpace, field: str, value: Any) -> bool:
    """The space has a parameter for `field` that can take `value` (a bool, or a categorical offering it)."""
    for name, spec in space.parameters.items():
        if spec.target(name) != field:
            continue
        if spec.type == "bool":
            return isinstance(value, bool)
        if spec.choices is not None and any(type(c) is type(value) and c == value for c in spec.choices):
            return True  # by type too: True == 1 would let an int choice pass for a bool
    return False


def guided_config(space: SearchSpace, overrides: Mapping[str, Any]) -> EngineConfig:
    """The defaults config with `overrides` applied (validated like any trial config)."""
    settings = space.defaults_config().model_dump(mode="python")
    for path, value in overrides.items():
        set_path(settings, path, value)
    try:
        return EngineConfig.model_validate(settings)
    except ValueError as exc:
        raise InvalidTrialConfig(f"guided config {dict(overrides)}: {exc}") from None


def enqueue_guided_trials(study: optuna.Study, space: SearchSpace, metrics: Mapping[str, Any]) -> list[Guidance]:
    """Queue each guided trial the profile calls for, unless the study already has it."""
    queued: list[Guidance] = []
    existing = [t.user_attrs.get(attrs.GUIDED_OVERRIDES) for t in study.get_trials(deepcopy=False)]
    for guidance in guidance_from_profile(space, metrics):
        if guidance.overrides in existing:
            continue
        study.enqueue_trial(
            {},
            user_attrs={attrs.CONFIG_KIND: attrs.GUIDED, attrs.GUIDED_OVERRIDES: guidance.overrides, attrs.GUIDED_WHY: guidance.why},
            skip_if_exists=False,
        )
        log.info("profile-guided trial queued: %s", guidance.why)
        queued.append(guidance)
    return queued


def _step_up(space: SearchSpace, field: str, current: int) -> int | None:
    """The space's value for `field` to try instead of `current`: the smallest at or above API_SERVER_GROWTH x
    current, else the largest above current; None when the space does not tune the field or offers nothing above."""
    for name, spec in space.parameters.items():
        if spec.target(name) != field:
            continue
        if spec.choices is not None:
            values = [v for v in spec.choices if isinstance(v, int) and not isinstance(v, bool)]
        elif spec.low is not None and spec.high is not None:
            values = [int(spec.high), max(int(spec.low), current * API_SERVER_GROWTH)]
        else:
            values = []
        above = sorted(v for v in values if v > current)
        if above:
            return next((v for v in above if v >= current * API_SERVER_GROWTH), above[-1])
    return None
