"""Fake NVML modules, injected where `autotune.observe.gpu` takes its `nvml=` (the boundary to the GPU).

    from helpers.fake_nvml import FakeNvml, FakeGpmNvml, FakeClock

`FakeNvml`: devices with utilization, memory, power and SM clock, no GPM API (like an old nvidia-ml-py).
`FakeGpmNvml`: the same with NVML GPM. Each device integrates its current activity (`set_activity`) over a fake
clock (`advance`); a GPM sample records the integrals and `nvmlGpmMetricsGet` returns their growth per second
between two samples, as the driver does from its counters. It fills the real pynvml request struct (ctypes), and
its sample handles are real `c_nvmlGpmSample_t` pointers, so the code under test builds what real NVML reads.
"""

from __future__ import annotations

import ctypes
from types import SimpleNamespace

import pynvml

MIB = 1024 * 1024


class FakeNvmlError(Exception):
    pass


class FakeNvml:
    """Two devices; utilization follows `self.util` (changeable); device 1 does not report power."""

    NVML_CLOCK_SM = 1
    NVMLError = FakeNvmlError

    def __init__(self, devices: int = 2) -> None:
        self.devices = devices
        self.util = [50.0, 70.0]
        self.inits = self.shutdowns = 0

    def nvmlInit(self) -> None:
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return self.devices

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        return f"GPU-0000{handle}-abcd"

    def nvmlDeviceGetName(self, handle: int) -> bytes:
        return f"Fake H100 #{handle}".encode()

    def nvmlSystemGetDriverVersion(self) -> str:
        return "999.1"

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(gpu=self.util[handle], memory=0)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        used = (1000 + 1000 * handle) * MIB
        return SimpleNamespace(used=used, total=80_000 * MIB, free=80_000 * MIB - used)

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        if handle == 1:
            raise FakeNvmlError("Not Supported")
        return 300_000  # mW

    def nvmlDeviceGetClockInfo(self, handle: int, clock: int) -> int:
        assert clock == self.NVML_CLOCK_SM
        return 1500 + 100 * handle


class FakeClock:
    """A monotonic clock the test moves (`NvmlSampler(clock=...)`)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t


GPM_IDS = {
    "sm_active": pynvml.NVML_GPM_METRIC_SM_UTIL,
    "sm_occupancy": pynvml.NVML_GPM_METRIC_SM_OCCUPANCY,
    "tensor_active": pynvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL,
    "dram_bw": pynvml.NVML_GPM_METRIC_DRAM_BW_UTIL,
}


def _address(sample: object) -> int:
    return int(ctypes.cast(sample, ctypes.c_void_p).value or 0)


class FakeGpmNvml(FakeNvml):
    """FakeNvml with NVML GPM on a fake clock. NVML's busy flag stays at 99% whatever the SMs do."""

    NVMLError = pynvml.NVMLError
    NVML_SUCCESS = pynvml.NVML_SUCCESS
    NVML_DEVICE_MIG_ENABLE = pynvml.NVML_DEVICE_MIG_ENABLE
    NVML_GPM_METRICS_GET_VERSION = pynvml.NVML_GPM_METRICS_GET_VERSION
    NVML_GPM_METRIC_SM_UTIL = pynvml.NVML_GPM_METRIC_SM_UTIL
    NVML_GPM_METRIC_SM_OCCUPANCY = pynvml.NVML_GPM_METRIC_SM_OCCUPANCY
    NVML_GPM_METRIC_ANY_TENSOR_UTIL = pynvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL
    NVML_GPM_METRIC_DRAM_BW_UTIL = pynvml.NVML_GPM_METRIC_DRAM_BW_UTIL
    c_nvmlGpmMetricsGet_t = pynvml.c_nvmlGpmMetricsGet_t

    def __init__(self, clock: FakeClock, devices: int = 1) -> None:
        super().__init__(devices)
        self.clock = clock
        self.util = [99.0] * devices
        self.supported = True
        self.mig_enabled = False
        self.unsupported_metrics: set[int] = set()
        self.sample_get_error: int | None = None  # an NVML error code nvmlGpmSampleGet raises
        self._rates = [dict.fromkeys(GPM_IDS.values(), 0.0) for _ in range(devices)]
        self._integrals = [dict.fromkeys(GPM_IDS.values(), 0.0) for _ in range(devices)]
        self._buffers: dict[int, ctypes.Array[ctypes.c_char]] = {}
        self._recorded: dict[int, tuple[int, float, dict[int, float]]] = {}
        self.freed: set[int] = set()

    # the test's controls
    def set_activity(self, device: int = 0, **percent: float) -> None:
        """From now on: e.g. `set_activity(0, sm_active=70, tensor_active=24)` (percentages of time)."""
        for name, value in percent.items():
            self._rates[device][GPM_IDS[name]] = value

    def advance(self, seconds: float) -> None:
        for rates, integrals in zip(self._rates, self._integrals, strict=True):
            for metric, rate in rates.items():
                integrals[metric] += rate * seconds
        self.clock.t += seconds

    def allocated(self) -> set[int]:
        return set(self._buffers)

    # NVML's GPM API
    def nvmlDeviceGetMigMode(self, handle: int) -> list[int]:
        mode = self.NVML_DEVICE_MIG_ENABLE if self.mig_enabled else 0
        return [mode, mode]

    def nvmlGpmQueryDeviceSupport(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(version=1, isSupportedDevice=1 if self.supported else 0)

    def nvmlGpmSampleAlloc(self) -> object:
        buffer = ctypes.create_string_buffer(16)
        sample = ctypes.cast(buffer, pynvml.c_nvmlGpmSample_t)
        self._buffers[_address(sample)] = buffer
        return sample

    def nvmlGpmSampleFree(self, sample: object) -> None:
        self.freed.add(_address(sample))

    def nvmlGpmSampleGet(self, handle: int, sample: object) -> object:
        if self.sample_get_error is not None:
            raise pynvml.NVMLError(self.sample_get_error)
        assert _address(sample) in self._buffers and _address(sample) not in self.freed
        self._recorded[_address(sample)] = (handle, self.clock.t, dict(self._integrals[handle]))
        return sample

    def nvmlGpmMetricsGet(self, request: pynvml.c_nvmlGpmMetricsGet_t) -> pynvml.c_nvmlGpmMetricsGet_t:
        assert request.version == self.NVML_GPM_METRICS_GET_VERSION
        handle1, t1, first = self._recorded[_address(request.sample1)]
        handle2, t2, second = self._recorded[_address(request.sample2)]
        assert handle1 == handle2 and t2 > t1, "GPM metrics need two samples of one device, in time order"
        for slot in range(request.numMetrics):
            metric = request.metrics[slot]
            if metric.metricId in self.unsupported_metrics:
                metric.nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
                metric.value = 0.0
                continue
            metric.nvmlReturn = self.NVML_SUCCESS
            metric.value = (second[metric.metricId] - first[metric.metricId]) / (t2 - t1)
        return request
