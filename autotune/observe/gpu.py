"""GPU telemetry: an NVML sampler in a background thread, or an honest "not available".

`make_gpu_sampler()` returns an `NvmlSampler` when NVML works, else a `NotAvailableSampler`
whose summary is None (never zeros). The NVML module is injectable (`nvml=`) so tests pass a fake.
Samples every `interval_s` (default 0.1 s, 10 Hz): utilization %, memory used MiB, power W,
SM clock MHz, per device. NVML's utilization is a busy flag (the share of time any kernel ran); where the GPU has
NVML GPM (`autotune.observe.gpm`: Hopper and newer), a sample every `gpm_interval_s` (default 0.5 s: GPM counters refresh
every 100 ms) also carries SM active, SM occupancy, tensor-pipe active and DRAM bandwidth % over the interval since
the previous GPM sample, and the summary says why where it has none (`gpm_status`), never zeros. Window marks (`mark_window_start/end`, or `summarize(start, end)`
with `time.monotonic()` bounds) make the summary cover only the measured window; the whole
time series is kept. Per sample, across devices: utilization, SM clock and the GPM figures are averaged, memory
and power are summed (a tensor-parallel engine uses them all). A GPM figure's window mean weighs each interval by
its length, and counts only intervals wholly inside the window.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
from pydantic import Field

from autotune.base_models import StrictModel
from autotune.observe.gpm import (
    DEFAULT_GPM_INTERVAL_S,
    GPM_METRICS,
    GPM_MIN_INTERVAL_S,
    GPM_OK,
    NO_INTERVAL,
    STOPPED_PREFIX,
    UNAVAILABLE_PREFIX,
    GpmReader,
    GpmUnavailable,
)
from autotune.observe.names import GPM_STATS, gpm_field
from autotune.observe.sampler import PeriodicSampler

_T = TypeVar("_T")

_MIB = 1024 * 1024


class GpuSummary(StrictModel):
    """GPU figures over the measured window only: NVML's (utilization, memory, power, clock) and, where the GPU has
    NVML GPM (Hopper and newer), its SM counters. Percentages are 0-100, averaged over the devices in use."""

    devices: list[str] = Field(default_factory=list)
    samples: int = 0
    util_mean: float | None = Field(
        default=None,
        description="NVML busy %: share of time at least one kernel ran (a busy flag: ~99% under any serving load; "
        "sm_active_mean says how much of the GPU worked)",
    )
    util_p50: float | None = Field(default=None, description="NVML busy %, median sample")
    util_p95: float | None = Field(default=None, description="NVML busy %, 95th percentile sample")
    mem_used_max_mib: float | None = None
    power_mean_w: float | None = None
    sm_clock_mean_mhz: float | None = None
    gpm_status: str | None = Field(
        default=None,
        description="NVML GPM: 'ok', or why its figures are absent or partial ('unavailable: <reason>', 'stopped: "
        "<reason>', 'no GPM interval inside this window', 'ok; not reported: ...'); None: not recorded (a result "
        "from before GPM sampling)",
    )
    gpm_intervals: int = Field(default=0, description="GPM intervals (between consecutive GPM samples) in the window")
    sm_active_mean: float | None = Field(
        default=None, description="SM active % (GPM SM_UTIL): share of SMs busy, weighted by interval length"
    )
    sm_active_p50: float | None = Field(default=None, description="SM active %, median interval")
    sm_active_p95: float | None = Field(default=None, description="SM active %, 95th percentile interval")
    sm_occupancy_mean: float | None = Field(
        default=None, description="SM occupancy % (GPM SM_OCCUPANCY): resident warps vs the SMs' maximum"
    )
    tensor_active_mean: float | None = Field(
        default=None, description="Tensor-pipe active % (GPM ANY_TENSOR_UTIL): share of time tensor pipes ran"
    )
    tensor_active_p95: float | None = Field(default=None, description="Tensor-pipe active %, 95th percentile interval")
    dram_bw_mean: float | None = Field(default=None, description="DRAM bandwidth % (GPM DRAM_BW_UTIL) of its peak")
    dram_bw_p95: float | None = Field(default=None, description="DRAM bandwidth %, 95th percentile interval")


@dataclass(frozen=True, slots=True)
class GpuSample:
    t_monotonic: float
    device: int
    util_pct: float | None
    mem_used_mib: float | None
    power_w: float | None
    sm_clock_mhz: float | None
    gpm_interval_s: float | None = None  # the GPM interval ending at this sample; None: no GPM figures
    sm_active_pct: float | None = None
    sm_occupancy_pct: float | None = None
    tensor_active_pct: float | None = None
    dram_bw_pct: float | None = None


class GpuSampler(Protocol):
    available: bool
    reason: str | None

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def devices(self) -> list[str]: ...
    def driver_version(self) -> str | None: ...
    def mark_window_start(self) -> None: ...
    def mark_window_end(self) -> None: ...
    def summary(self) -> GpuSummary | None: ...
    def summarize(self, start: float, end: float) -> GpuSummary | None: ...
    def timeseries(self, origin: float | None = None) -> list[dict[str, float]]: ...


def _import_nvml() -> Any:
    import pynvml  # nvidia-ml-py

    return pynvml


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NotAvailableSampler:
    """No GPU telemetry here: every figure is None, with the reason."""

    available = False

    def __init__(self, reason: str = "not available") -> None:
        self.reason: str | None = reason

    def start(self) -> None: ...
    def stop(self) -> None: ...

    def devices(self) -> list[str]:
        return []

    def driver_version(self) -> str | None:
        return None

    def mark_window_start(self) -> None: ...
    def mark_window_end(self) -> None: ...

    def summary(self) -> GpuSummary | None:
        return None

    def summarize(self, start: float, end: float) -> GpuSummary | None:
        return None

    def timeseries(self, origin: float | None = None) -> list[dict[str, float]]:
        return []


class NvmlSampler(PeriodicSampler[GpuSample, GpuSummary]):
    available = True
    reason: str | None = None
    thread_name = "autotune-nvml-sampler"

    def __init__(
        self,
        nvml: Any | None = None,
        *,
        interval_s: float = 0.1,
        device_indices: list[int] | None = None,
        clock: Callable[[], float] = time.monotonic,
        gpm_interval_s: float = DEFAULT_GPM_INTERVAL_S,
    ) -> None:
        if not gpm_interval_s > GPM_MIN_INTERVAL_S:
            raise ValueError(f"gpm_interval_s must be above {GPM_MIN_INTERVAL_S} s (NVML's GPM refresh), got {gpm_interval_s}")
        super().__init__(interval_s=interval_s)
        self._clock = clock
        self.gpm_interval_s = gpm_interval_s
        self._gpm: GpmReader | None = None
        self._gpm_status: str | None = None  # None until the first sample opens GPM
        self._gpm_sampled_at = 0.0
        self._gpm_errors: dict[str, str] = {}  # GPM metrics NVML did not compute, with its first error
        self.nvml = nvml if nvml is not None else _import_nvml()
        self.nvml.nvmlInit()
        self._indices = device_indices if device_indices is not None else visible_device_indices(self.nvml)
        self._handles = [self.nvml.nvmlDeviceGetHandleByIndex(i) for i in self._indices]
        self._names = [_text(self.nvml.nvmlDeviceGetName(h)) for h in self._handles]
        try:
            self._driver: str | None = _text(self.nvml.nvmlSystemGetDriverVersion())
        except Exception:
            self._driver = None

    def devices(self) -> list[str]:
        return list(self._names)

    def driver_version(self) -> str | None:
        return self._driver

    def _read(self, call: str, handle: Any, *args: Any) -> Any:
        try:
            return getattr(self.nvml, call)(handle, *args)
        except Exception:  # a figure this device does not report stays None
            return None

    @property
    def gpm_status(self) -> str | None:
        """'ok' while GPM is sampled, else why not; None before the first sample."""
        return self._gpm_status

    def _sample_gpm(self, now: float) -> tuple[float, list[dict[str, float | None]]] | None:
        """(interval length, each device's GPM figures) since the previous GPM sample, once gpm_interval_s has passed;
        None on the first sample (it opens GPM), in between, and where GPM is unavailable. A GPM failure mid-run stops
        GPM sampling, with the reason."""
        if self._gpm_status is None:
            try:
                self._gpm = GpmReader.open(self.nvml, self._handles, [f"GPU {i} ({n})" for i, n in zip(self._indices, self._names)])
                self._gpm_status = GPM_OK
                self._gpm_errors = self._gpm.metric_errors
            except GpmUnavailable as exc:
                self._gpm_status = UNAVAILABLE_PREFIX + exc.reason
            self._gpm_sampled_at = now
            return None
        if self._gpm is None or now - self._gpm_sampled_at < self.gpm_interval_s:
            return None
        try:
            readings = self._gpm.read()
        except Exception as exc:
            self._gpm_status = f"{STOPPED_PREFIX}GPM sampling failed during the run: {type(exc).__name__}: {exc}"
            self._close_gpm()
            return None
        interval_s, self._gpm_sampled_at = now - self._gpm_sampled_at, now
        return interval_s, readings

    def _close_gpm(self) -> None:
        if self._gpm is not None:
            self._gpm.close()
            self._gpm = None

    def sample_once(self) -> None:
        now = self._clock()
        gpm = self._sample_gpm(now)
        batch = []
        for position, handle in enumerate(self._handles):
            util = self._read("nvmlDeviceGetUtilizationRates", handle)
            memory = self._read("nvmlDeviceGetMemoryInfo", handle)
            power_mw = self._read("nvmlDeviceGetPowerUsage", handle)
            clock = self._read("nvmlDeviceGetClockInfo", handle, getattr(self.nvml, "NVML_CLOCK_SM", 1))
            batch.append(
                GpuSample(
                    t_monotonic=now,
                    device=self._indices[position],
                    util_pct=None if util is None else float(util.gpu),
                    mem_used_mib=None if memory is None else memory.used / _MIB,
                    power_w=None if power_mw is None else power_mw / 1000.0,
                    sm_clock_mhz=None if clock is None else float(clock),
                    **({} if gpm is None else {"gpm_interval_s": gpm[0], **gpm[1][position]}),
                )
            )
        self._add(*batch)

    def stop(self) -> None:
        super().stop()
        self._close_gpm()  # after the sampling thread ended: NVML frees the GPM sample buffers
        try:
            self.nvml.nvmlShutdown()
        except Exception:
            pass

    def summarize(self, start: float, end: float) -> GpuSummary | None:
        window = [s for s in self._snapshot() if start <= s.t_monotonic <= end]
        by_time: dict[float, list[GpuSample]] = {}
        for sample in window:
            by_time.setdefault(sample.t_monotonic, []).append(sample)

        def per_sample(field: str, combine: Any) -> list[float]:
            values = []
            for group in by_time.values():
                present = [getattr(s, field) for s in group if getattr(s, field) is not None]
                if present:
                    values.append(float(combine(present)))
            return values

        util = per_sample("util_pct", np.mean)
        memory = per_sample("mem_used_mib", np.sum)
        power = per_sample("power_w", np.sum)
        clock = per_sample("sm_clock_mhz", np.mean)
        return GpuSummary(
            devices=self.devices(),
            samples=len(by_time),
            util_mean=float(np.mean(util)) if util else None,
            util_p50=float(np.percentile(util, 50)) if util else None,
            util_p95=float(np.percentile(util, 95)) if util else None,
            mem_used_max_mib=max(memory) if memory else None,
            power_mean_w=float(np.mean(power)) if power else None,
            sm_clock_mean_mhz=float(np.mean(clock)) if clock else None,
            **self._gpm_figures(by_time, start),
        )

    def _gpm_figures(self, by_time: dict[float, list[GpuSample]], start: float) -> dict[str, Any]:
        """The GPM fields of a window's summary: intervals wholly inside it, averaged over devices, the mean
        weighted by interval length; the status says why where a figure is absent."""
        intervals = [
            (t, group) for t, group in sorted(by_time.items())
            if group[0].gpm_interval_s is not None and t - group[0].gpm_interval_s >= start
        ]
        figures: dict[str, Any] = {"gpm_intervals": len(intervals)}
        for name in GPM_METRICS:
            values, weights = [], []
            for _, group in intervals:
                present = [getattr(s, name) for s in group if getattr(s, name) is not None]
                if present:
                    values.append(float(np.mean(present)))
                    weights.append(float(group[0].gpm_interval_s or 0.0))
            figure = name.removesuffix("_pct")
            if values:
                stats = {"mean": float(np.average(values, weights=weights)) if sum(weights) > 0 else float(np.mean(values)),
                         "p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95))}
                figures.update({gpm_field(figure, stat): stats[stat] for stat in GPM_STATS[figure]})
        status = self._gpm_status or f"{UNAVAILABLE_PREFIX}no sample taken"
        if status == GPM_OK and not intervals:
            status = NO_INTERVAL
        elif status == GPM_OK and self._gpm_errors:
            status += "; not reported: " + "; ".join(f"{k}: {v}" for k, v in self._gpm_errors.items())
        figures["gpm_status"] = status
        return figures

    def timeseries(self, origin: float | None = None) -> list[dict[str, float]]:
        """Every sample; `t_s` is seconds from `origin` (default: the window start, else the first sample)."""
        samples = self._snapshot()
        if origin is None:
            origin = self._window[0] if self._window[0] is not None else (samples[0].t_monotonic if samples else 0.0)
        rows = []
        for s in samples:
            row = {"t_s": round(s.t_monotonic - origin, 4), "device": float(s.device)}
            for name in ("util_pct", "mem_used_mib", "power_w", "sm_clock_mhz", *GPM_METRICS):
                value = getattr(s, name)
                if value is not None:
                    row[name] = round(value, 3)
            rows.append(row)
        return rows


def make_gpu_sampler(enabled: bool = True, *, nvml: Any | None = None, interval_s: float = 0.1) -> GpuSampler:
    """An NVML sampler when NVML works and sees a GPU, else NotAvailableSampler with the reason."""
    if not enabled:
        return NotAvailableSampler("disabled")
    try:
        sampler = NvmlSampler(nvml, interval_s=interval_s)
    except Exception as exc:
        return NotAvailableSampler(f"NVML not available: {type(exc).__name__}: {exc}".strip())
    if not sampler.devices():
        sampler.stop()
        return NotAvailableSampler("NVML sees no GPU")
    return sampler


def visible_device_indices(nvml: Any, visible: str | None = None) -> list[int]:
    """NVML indices of the GPUs this process may use: NVML sees every GPU, CUDA only CUDA_VISIBLE_DEVICES.

    With one tuning worker per GPU on a host, each worker must watch (and wait for the release of) its
    own GPU only. Entries may be indices or UUIDs (`GPU-...`, prefixes allowed), as CUDA accepts them.
    """
    count = nvml.nvmlDeviceGetCount()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES") if visible is None else visible
    if visible is None or not visible.strip():
        return list(range(count))
    uuids: list[str] | None = None
    chosen: list[int] = []
    for entry in (item.strip() for item in visible.split(",")):
        if entry.isdigit():
            index = int(entry)
        else:
            if uuids is None:
                uuids = [_text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(i))) for i in range(count)]
            index = next((i for i, uuid in enumerate(uuids) if entry and uuid.startswith(entry)), -1)
        if not 0 <= index < count:
            break  # CUDA ignores this entry and every one after it
        chosen.append(index)
    return chosen


def _ask_nvml(query: Callable[[Any], _T], nvml: Any | None) -> _T | None:
    """`query(nvml_module)` between nvmlInit and nvmlShutdown; None when NVML is missing or the query fails."""
    try:
        module = nvml if nvml is not None else _import_nvml()
        module.nvmlInit()
    except Exception:
        return None
    try:
        return query(module)
    except Exception:
        return None
    finally:
        try:
            module.nvmlShutdown()
        except Exception:
            pass


def _visible_memory_infos(nvml: Any | None) -> list[Any] | None:
    """NVML memory info (total, free, used bytes) of each visible GPU now; None when NVML cannot tell."""
    return _ask_nvml(
        lambda module: [module.nvmlDeviceGetMemoryInfo(module.nvmlDeviceGetHandleByIndex(i)) for i in visible_device_indices(module)],
        nvml,
    )


def gpu_total_memory_gib(nvml: Any | None = None) -> float | None:
    """Total memory of this process's first visible GPU (the first of CUDA_VISIBLE_DEVICES, as NVML numbers them);
    None without NVML or a visible GPU. With one tuning worker per GPU, each judges memory on its own card."""
    infos = _visible_memory_infos(nvml)
    return float(infos[0].total) / 1024**3 if infos else None


def gpu_memory_free_fraction(nvml: Any | None = None) -> list[float] | None:
    """Free memory of each visible GPU as a fraction of its total; None when NVML is not available."""
    infos = _visible_memory_infos(nvml)
    return None if infos is None else [info.free / info.total for info in infos if info.total]


def gpu_memory_used_mib(nvml: Any | None = None) -> list[float] | None:
    """Memory used on each GPU now, in MiB; None when NVML is not available (the tuner checks release)."""
    infos = _visible_memory_infos(nvml)
    return None if infos is None else [info.used / _MIB for info in infos]


@dataclass(frozen=True, slots=True)
class GpuFacts:
    """What a search space is sized for: one GPU's name, memory and CUDA compute capability (None: unknown)."""

    name: str
    memory_gib: float
    compute_capability: tuple[int, int] | None = None


def first_visible_gpu(nvml: Any | None = None) -> GpuFacts | None:
    """This process's first visible GPU (as `gpu_total_memory_gib` picks it); None without NVML or a visible GPU."""

    def query(module: Any) -> GpuFacts | None:
        indices = visible_device_indices(module)
        if not indices:
            return None
        handle = module.nvmlDeviceGetHandleByIndex(indices[0])
        total = float(module.nvmlDeviceGetMemoryInfo(handle).total) / 1024**3
        try:
            major, minor = module.nvmlDeviceGetCudaComputeCapability(handle)
            capability: tuple[int, int] | None = (int(major), int(minor))
        except Exception:
            capability = None
        return GpuFacts(name=_text(module.nvmlDeviceGetName(handle)), memory_gib=total, compute_capability=capability)

    return _ask_nvml(query, nvml)


@dataclass(frozen=True, slots=True)
class GpuNow:
    """One visible GPU at one instant (what the chat page's side panel shows)."""

    index: int
    name: str
    utilization_pct: float | None
    memory_used_mib: float | None
    memory_total_mib: float | None


def gpu_activity_now(nvml: Any | None = None) -> list[GpuNow] | None:
    """Utilization (NVML's busy share of its last sample period) and memory of each visible GPU now;
    None when NVML is not available or sees no GPU."""

    def query(module: Any) -> list[GpuNow] | None:
        gpus: list[GpuNow] = []
        for index in visible_device_indices(module):
            handle = module.nvmlDeviceGetHandleByIndex(index)
            try:
                utilization: float | None = float(module.nvmlDeviceGetUtilizationRates(handle).gpu)
            except Exception:
                utilization = None
            try:
                memory = module.nvmlDeviceGetMemoryInfo(handle)
                used, total = memory.used / _MIB, memory.total / _MIB
            except Exception:
                used = total = None
            gpus.append(GpuNow(index, _text(module.nvmlDeviceGetName(handle)), utilization, used, total))
        return gpus or None

    return _ask_nvml(query, nvml)
