"""GPU activity by SM counters (NVML GPM) beside NVML's busy flag, with a fake NVML on a fake clock."""

from __future__ import annotations

import pynvml
import pytest
from helpers.fake_nvml import FakeClock, FakeGpmNvml, FakeNvml

from autotune.observe.gpm import GPM_METRICS, GpmReader, GpmUnavailable
from autotune.observe.gpu import NvmlSampler

GPM_FIELDS = ("sm_active_mean", "sm_active_p50", "sm_active_p95", "sm_occupancy_mean", "tensor_active_mean",
              "tensor_active_p95", "dram_bw_mean", "dram_bw_p95")


def _sampler(devices: int = 1) -> tuple[FakeGpmNvml, FakeClock, NvmlSampler]:
    clock = FakeClock()
    nvml = FakeGpmNvml(clock, devices=devices)
    return nvml, clock, NvmlSampler(nvml, clock=clock)


def test_gpm_figures_are_each_intervals_activity_weighted_by_its_length() -> None:
    nvml, clock, sampler = _sampler()
    sampler.sample_once()  # opens GPM: the first GPM sample
    start = clock.t
    nvml.set_activity(0, sm_active=80, sm_occupancy=30, tensor_active=40, dram_bw=20)
    nvml.advance(1.0)
    sampler.sample_once()  # interval 1: 1 s at 80% SM active
    nvml.set_activity(0, sm_active=40, sm_occupancy=10, tensor_active=8, dram_bw=60)
    nvml.advance(3.0)
    sampler.sample_once()  # interval 2: 3 s at 40%
    summary = sampler.summarize(start, clock.t)
    assert summary is not None and summary.gpm_status == "ok" and summary.gpm_intervals == 2
    assert summary.util_mean == pytest.approx(99.0)  # NVML's busy flag, unmoved by what the SMs do
    assert summary.sm_active_mean == pytest.approx((80 * 1 + 40 * 3) / 4)  # 50: time-weighted, not (80+40)/2
    assert summary.sm_active_p50 == pytest.approx(60.0)  # the median of the two intervals
    assert summary.sm_occupancy_mean == pytest.approx((30 + 10 * 3) / 4)
    assert summary.tensor_active_mean == pytest.approx((40 + 8 * 3) / 4)
    assert summary.dram_bw_mean == pytest.approx((20 + 60 * 3) / 4)
    assert summary.dram_bw_p95 == pytest.approx(58.0)
    series = sampler.timeseries(origin=start)
    assert [row.get("sm_active_pct") for row in series] == [None, 80.0, 40.0]  # the first sample opens GPM
    assert series[2]["tensor_active_pct"] == 8.0 and series[2]["util_pct"] == 99.0


def test_a_window_counts_only_gpm_intervals_wholly_inside_it_and_averages_devices() -> None:
    nvml, clock, sampler = _sampler(devices=2)
    nvml.set_activity(0, sm_active=100)
    sampler.sample_once()
    nvml.advance(1.0)
    start = clock.t - 0.5  # the window starts inside the first interval
    sampler.sample_once()
    nvml.set_activity(0, sm_active=70)
    nvml.set_activity(1, sm_active=30)
    nvml.advance(1.0)
    sampler.sample_once()
    summary = sampler.summarize(start, clock.t)
    assert summary is not None and summary.samples == 2 and summary.gpm_intervals == 1
    assert summary.sm_active_mean == pytest.approx(50.0)  # (70 + 30) / 2 devices; the 100% interval began before
    none_inside = sampler.summarize(clock.t + 1, clock.t + 2)
    assert none_inside is not None and none_inside.gpm_status == "no GPM interval inside this window"
    assert all(getattr(none_inside, f) is None for f in GPM_FIELDS)


def test_gpm_samples_are_spaced_beyond_nvmls_refresh() -> None:
    """NVML refreshes GPM counters every 100 ms: samples closer than that would read 0. At 10 Hz NVML ticks, a GPM
    interval ends every gpm_interval_s only, and covers all the ticks since the last one."""
    nvml, clock, sampler = _sampler()
    assert sampler.gpm_interval_s == 0.5
    nvml.set_activity(0, sm_active=30)
    sampler.sample_once()
    for _ in range(10):
        nvml.advance(0.1)
        sampler.sample_once()
    series = sampler.timeseries()
    assert [i for i, row in enumerate(series) if "sm_active_pct" in row] == [5, 10]
    summary = sampler.summary()
    assert summary is not None and summary.samples == 11 and summary.gpm_intervals == 2
    assert summary.sm_active_mean == pytest.approx(30.0)
    with pytest.raises(ValueError, match="gpm_interval_s must be above 0.1 s"):
        NvmlSampler(nvml, gpm_interval_s=0.05)


def test_gpm_samples_are_freed_on_stop() -> None:
    nvml, clock, sampler = _sampler(devices=2)
    sampler.sample_once()
    nvml.advance(1.0)
    sampler.sample_once()
    assert len(nvml.allocated()) == 4 and not nvml.freed  # two per device, reused
    sampler.stop()
    assert nvml.freed == nvml.allocated() and nvml.shutdowns == 1
    assert sampler.summarize(0, clock.t).sm_active_mean == pytest.approx(0.0)  # measured idle SMs: a real 0


def _unavailable(setup: str) -> FakeGpmNvml | FakeNvml:
    clock = FakeClock()
    nvml = FakeGpmNvml(clock)
    if setup == "pre-hopper":
        nvml.supported = False
    elif setup == "mig":
        nvml.mig_enabled = True
    elif setup == "no permission":
        nvml.sample_get_error = pynvml.NVML_ERROR_NO_PERMISSION
    elif setup == "old nvidia-ml-py":
        return FakeNvml(devices=1)
    return nvml


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ("pre-hopper", "GPU 0 (Fake H100 #0) does not support GPM"),
        ("mig", "GPU 0 (Fake H100 #0) is in MIG mode"),
        ("no permission", "nvmlGpmSampleGet on GPU 0 (Fake H100 #0): Insufficient Permissions"),
        ("old nvidia-ml-py", "the installed nvidia-ml-py has no GPM API"),
    ],
)
def test_without_gpm_the_summary_says_why_and_has_no_sm_figures(setup: str, reason: str) -> None:
    nvml = _unavailable(setup)
    sampler = NvmlSampler(nvml)
    for _ in range(3):
        sampler.sample_once()
    summary = sampler.summary()
    assert summary is not None and summary.util_mean is not None  # NVML's own figures still there
    assert summary.gpm_status is not None and summary.gpm_status.startswith("unavailable: " + reason)
    assert all(getattr(summary, field) is None for field in GPM_FIELDS) and summary.gpm_intervals == 0
    assert all(not set(GPM_METRICS) & set(row) for row in sampler.timeseries())
    if isinstance(nvml, FakeGpmNvml):
        assert nvml.freed == nvml.allocated()  # what was allocated before the failure is given back


def test_a_metric_nvml_does_not_compute_stays_none_and_is_named() -> None:
    nvml, clock, sampler = _sampler()
    nvml.unsupported_metrics = {pynvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL}
    nvml.set_activity(0, sm_active=60, tensor_active=30)
    sampler.sample_once()
    nvml.advance(1.0)
    sampler.sample_once()
    summary = sampler.summary()
    assert summary is not None and summary.sm_active_mean == pytest.approx(60.0)
    assert summary.tensor_active_mean is None and summary.tensor_active_p95 is None
    assert summary.gpm_status == "ok; not reported: tensor_active_pct: Not Supported"


def test_a_gpm_failure_mid_run_stops_gpm_with_the_reason_and_keeps_what_was_measured() -> None:
    nvml, clock, sampler = _sampler()
    nvml.set_activity(0, sm_active=70)
    sampler.sample_once()
    nvml.advance(1.0)
    sampler.sample_once()
    nvml.sample_get_error = pynvml.NVML_ERROR_GPU_IS_LOST
    nvml.advance(1.0)
    sampler.sample_once()
    summary = sampler.summary()
    assert summary is not None and summary.gpm_status is not None and summary.gpm_status.startswith("stopped: ")
    assert "GPU is lost" in summary.gpm_status and summary.gpm_intervals == 1
    assert summary.sm_active_mean == pytest.approx(70.0) and summary.samples == 3
    assert nvml.freed == nvml.allocated()


def test_the_reader_reads_the_real_pynvml_request_struct() -> None:
    """The reader fills pynvml's ctypes struct (version, sample pointers, metric ids), as the driver reads it."""
    clock = FakeClock()
    nvml = FakeGpmNvml(clock)
    reader = GpmReader.open(nvml, [0])
    nvml.set_activity(0, sm_active=52, sm_occupancy=21, tensor_active=24, dram_bw=25)
    nvml.advance(0.5)
    assert reader.read() == [{"sm_active_pct": 52.0, "sm_occupancy_pct": 21.0, "tensor_active_pct": 24.0, "dram_bw_pct": 25.0}]
    reader.close()
    reader.close()  # idempotent
    assert nvml.freed == nvml.allocated()
    nvml.supported = False
    with pytest.raises(GpmUnavailable, match="does not support GPM"):
        GpmReader.open(nvml, [0])
