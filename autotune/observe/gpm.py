"""NVML GPM (GPU performance monitoring; Hopper and newer): what the SMs did between two samples of a device.

NVML's utilization (`nvmlDeviceGetUtilizationRates().gpu`) is the share of time at least one kernel ran: a busy flag.
A serving engine keeps some kernel running nearly all the time, so it reads 99% while most SMs idle (an H200 serving
80 req/s: NVML 99.9%, SM active 70%, tensor pipes 24%). GPM counts the SMs' own activity. Four of its metrics are read
here, each a percentage of the interval between two consecutive GPM samples:

- `sm_active_pct` (NVML_GPM_METRIC_SM_UTIL): share of SMs busy (at least one warp resident).
- `sm_occupancy_pct` (NVML_GPM_METRIC_SM_OCCUPANCY): resident warps vs the SMs' maximum.
- `tensor_active_pct` (NVML_GPM_METRIC_ANY_TENSOR_UTIL): share of time the tensor pipes ran.
- `dram_bw_pct` (NVML_GPM_METRIC_DRAM_BW_UTIL): DRAM bandwidth used vs its peak.

NVML refreshes the counters behind GPM about every 100 ms: two samples closer than GPM_MIN_INTERVAL_S apart hold no
new counts, and their metrics read 0 or fail. The caller spaces its samples further apart.

`GpmReader.open(nvml, handles)` takes each device's first GPM sample and returns a reader, or raises `GpmUnavailable`
with the reason (an nvidia-ml-py without GPM, a GPU without it, MIG mode, no permission). `read()` takes the next
sample and returns each device's metrics since the previous one. GPM samples are buffers NVML allocates: `close()`
frees them. The NVML module is passed in (the real `pynvml`, or a test's fake with the same names).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

GPM_METRICS: dict[str, str] = {
    "sm_active_pct": "NVML_GPM_METRIC_SM_UTIL",
    "sm_occupancy_pct": "NVML_GPM_METRIC_SM_OCCUPANCY",
    "tensor_active_pct": "NVML_GPM_METRIC_ANY_TENSOR_UTIL",
    "dram_bw_pct": "NVML_GPM_METRIC_DRAM_BW_UTIL",
}
"""Figure name -> the pynvml constant holding its GPM metric id."""

GPM_MIN_INTERVAL_S = 0.1
"""NVML: the interval between two nvmlGpmSampleGet calls should be greater than 100 ms (its internal refresh rate)."""
DEFAULT_GPM_INTERVAL_S = 0.5
"""The telemetry's GPM sample spacing: well above the refresh, and 16+ intervals in an 8 s window."""

NVML_BUSY_LABEL = "NVML busy"
"""How reports name NVML's utilization (`util_mean`): the share of time any kernel ran."""
SM_ACTIVE_LABEL = "SM active (GPM)"
GPM_UNAVAILABLE = "GPM unavailable"

GPM_OK = "ok"
UNAVAILABLE_PREFIX = "unavailable: "
STOPPED_PREFIX = "stopped: "
NO_INTERVAL = "no GPM interval inside this window"

_REQUIRED_API = ("nvmlGpmQueryDeviceSupport", "nvmlGpmSampleAlloc", "nvmlGpmSampleGet", "nvmlGpmSampleFree",
                 "nvmlGpmMetricsGet", "c_nvmlGpmMetricsGet_t", "NVML_GPM_METRICS_GET_VERSION", *GPM_METRICS.values())


class GpmUnavailable(Exception):
    """GPM cannot be read here; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def gpm_shown(status: str | None) -> str:
    """A GPU summary's `gpm_status` as reports print it where SM figures are absent."""
    if status is None:
        return "GPM not recorded"
    if status.startswith(UNAVAILABLE_PREFIX):
        return f"{GPM_UNAVAILABLE}: {status.removeprefix(UNAVAILABLE_PREFIX)}"
    return f"GPM {status}"


def _error_text(nvml: Any, code: int) -> str:
    try:
        return str(nvml.NVMLError(code))
    except Exception:
        return f"NVML error {code}"


class GpmReader:
    """Two GPM sample buffers per device (the previous sample and the next); use `open()`."""

    def __init__(self, nvml: Any, handles: Sequence[Any]) -> None:
        self.nvml = nvml
        self._handles = list(handles)
        self._ids = [int(getattr(nvml, constant)) for constant in GPM_METRICS.values()]
        self._samples: list[list[Any]] = []  # per device: [previous, next]
        self.metric_errors: dict[str, str] = {}
        """A metric NVML did not compute (its first error): its figure stays None."""

    @classmethod
    def open(cls, nvml: Any, handles: Sequence[Any], labels: Sequence[str] | None = None) -> GpmReader:
        missing = [name for name in _REQUIRED_API if not hasattr(nvml, name)]
        if missing:
            raise GpmUnavailable(f"the installed nvidia-ml-py has no GPM API (missing {', '.join(missing[:3])})")
        names = list(labels) if labels is not None else [f"GPU {i}" for i in range(len(handles))]
        for handle, name in zip(handles, names, strict=True):
            _check_device(nvml, handle, name)
        reader = cls(nvml, handles)
        try:
            for handle, name in zip(handles, names, strict=True):
                pair: list[Any] = []
                reader._samples.append(pair)
                for _ in range(2):
                    pair.append(_call(nvml, "nvmlGpmSampleAlloc", name))
                _call(nvml, "nvmlGpmSampleGet", name, handle, pair[0])
        except GpmUnavailable:
            reader.close()
            raise
        return reader

    def read(self) -> list[dict[str, float | None]]:
        """Each device's metrics over the interval since the previous sample (None: NVML did not compute it).
        NVML errors raise (the caller stops sampling GPM)."""
        readings = []
        for handle, pair in zip(self._handles, self._samples, strict=True):
            previous, current = pair
            self.nvml.nvmlGpmSampleGet(handle, current)
            request = self.nvml.c_nvmlGpmMetricsGet_t()
            request.version = self.nvml.NVML_GPM_METRICS_GET_VERSION
            request.numMetrics = len(self._ids)
            request.sample1 = previous
            request.sample2 = current
            for slot, metric_id in enumerate(self._ids):
                request.metrics[slot].metricId = metric_id
            self.nvml.nvmlGpmMetricsGet(request)
            readings.append(self._values(request))
            pair.reverse()  # this sample starts the next interval
        return readings

    def _values(self, request: Any) -> dict[str, float | None]:
        values: dict[str, float | None] = {}
        for slot, name in enumerate(GPM_METRICS):
            metric = request.metrics[slot]
            value = float(metric.value)
            if metric.nvmlReturn != self.nvml.NVML_SUCCESS:
                self.metric_errors.setdefault(name, _error_text(self.nvml, metric.nvmlReturn))
                values[name] = None
            elif not math.isfinite(value):
                self.metric_errors.setdefault(name, f"not a number ({value})")
                values[name] = None
            else:
                values[name] = value
        return values

    def close(self) -> None:
        """Free every GPM sample (idempotent; a failing free is ignored: nothing else can be done then)."""
        samples, self._samples = self._samples, []
        for pair in samples:
            for sample in pair:
                try:
                    self.nvml.nvmlGpmSampleFree(sample)
                except Exception:
                    pass


def _call(nvml: Any, function: str, name: str, *args: Any) -> Any:
    try:
        return getattr(nvml, function)(*args)
    except Exception as exc:
        raise GpmUnavailable(f"{function} on {name}: {exc}") from None


def _check_device(nvml: Any, handle: Any, name: str) -> None:
    """Raise GpmUnavailable when this device cannot give GPM samples as a whole GPU."""
    try:
        mig_current = nvml.nvmlDeviceGetMigMode(handle)[0]
    except Exception:  # a GPU without MIG (NotSupported): nothing to check
        mig_current = None
    if mig_current == getattr(nvml, "NVML_DEVICE_MIG_ENABLE", 1):
        raise GpmUnavailable(f"{name} is in MIG mode (GPM of MIG instances is not sampled)")
    support = _call(nvml, "nvmlGpmQueryDeviceSupport", name, handle)
    if not support.isSupportedDevice:
        raise GpmUnavailable(f"{name} does not support GPM (Hopper or newer has it)")
