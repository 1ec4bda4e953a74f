"""GPU telemetry with a fake NVML module injected at the boundary."""

from __future__ import annotations

import time

import pytest
from helpers.fake_nvml import FakeNvml, FakeNvmlError

from autotune.observe.gpu import (
    NotAvailableSampler,
    NvmlSampler,
    gpu_memory_free_fraction,
    gpu_memory_used_mib,
    make_gpu_sampler,
    visible_device_indices,
)


def test_summary_covers_only_the_window() -> None:
    nvml = FakeNvml()
    sampler = NvmlSampler(nvml)
    assert sampler.devices() == ["Fake H100 #0", "Fake H100 #1"] and sampler.driver_version() == "999.1"
    sampler.sample_once()  # before the window: util mean 60
    time.sleep(0.002)
    start = time.monotonic()
    nvml.util = [90.0, 100.0]
    sampler.sample_once()
    sampler.sample_once()
    end = time.monotonic()
    time.sleep(0.002)
    nvml.util = [0.0, 0.0]
    sampler.sample_once()  # after the window
    summary = sampler.summarize(start, end)
    assert summary is not None and summary.samples == 2
    assert summary.util_mean == pytest.approx(95.0) and summary.util_p95 == pytest.approx(95.0)
    assert summary.mem_used_max_mib == pytest.approx(3000.0)  # summed over devices
    assert summary.power_mean_w == pytest.approx(300.0)  # device 1 reports none: not counted as 0
    assert summary.sm_clock_mean_mhz == pytest.approx(1550.0)
    series = sampler.timeseries(origin=start)
    assert len(series) == 8 and {row["device"] for row in series} == {0.0, 1.0}
    assert all("power_w" not in row for row in series if row["device"] == 1.0)
    assert sampler.summarize(end + 10, end + 20).util_mean is None


def test_background_thread_samples_at_10_hz_or_more() -> None:
    nvml = FakeNvml(devices=1)
    sampler = NvmlSampler(nvml, interval_s=0.02)
    sampler.mark_window_start()
    sampler.start()
    deadline = time.monotonic() + 5.0
    started = time.monotonic()
    while len(sampler.timeseries()) < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    elapsed = time.monotonic() - started
    sampler.mark_window_end()
    sampler.stop()
    count = len(sampler.timeseries())
    assert count >= 10 and count / elapsed >= 10.0
    assert nvml.shutdowns == 1
    summary = sampler.summary()
    assert summary is not None and summary.samples >= 10 and summary.util_mean == pytest.approx(50.0)


def test_unavailable_nvml_reports_none_not_zeros() -> None:
    class Broken:
        def nvmlInit(self) -> None:
            raise FakeNvmlError("NVML Shared Library Not Found")

    sampler = make_gpu_sampler(nvml=Broken())
    assert isinstance(sampler, NotAvailableSampler) and "Library Not Found" in (sampler.reason or "")
    sampler.start()
    sampler.stop()
    assert sampler.summary() is None and sampler.timeseries() == [] and sampler.devices() == []
    assert make_gpu_sampler(nvml=FakeNvml(devices=0)).available is False
    assert make_gpu_sampler(False).reason == "disabled"
    assert gpu_memory_used_mib(Broken()) is None


def test_gpu_memory_used_mib_per_device() -> None:
    nvml = FakeNvml()
    assert gpu_memory_used_mib(nvml) == [1000.0, 2000.0]
    assert nvml.inits == nvml.shutdowns == 1
    assert gpu_memory_free_fraction(nvml) == [79_000 / 80_000, 78_000 / 80_000]


@pytest.mark.parametrize(
    ("visible", "expected"),
    [(None, [0, 1]), ("", [0, 1]), ("1", [1]), ("1,0", [1, 0]), ("GPU-00001", [1]), ("0,7,1", [0]), ("-1", [])],
)
def test_only_the_gpus_cuda_may_use_are_watched(
    monkeypatch: pytest.MonkeyPatch, visible: str | None, expected: list[int]
) -> None:
    # One tuning worker per GPU: each watches its own card, as CUDA_VISIBLE_DEVICES names it.
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    nvml = FakeNvml()
    assert visible_device_indices(nvml) == expected
    assert gpu_memory_used_mib(nvml) == [1000.0 + 1000.0 * i for i in expected]
    if expected:
        assert NvmlSampler(nvml).devices() == [f"Fake H100 #{i}" for i in expected]
