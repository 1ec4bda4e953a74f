"""The feasibility check reads the memory of this worker's own GPU (CUDA_VISIBLE_DEVICES), via a fake NVML."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from autotune.observe.gpu import gpu_total_memory_gib

GIB = 1024**3


class FakeNvml:
    """Two GPUs as NVML numbers them: 0 has 80 GiB, 1 has 141 GiB."""

    def __init__(self) -> None:
        self.totals = [80 * GIB, 141 * GIB]
        self.shut = False

    def nvmlInit(self) -> None:  # noqa: N802
        pass

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.shut = True

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return len(self.totals)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:  # noqa: N802
        return index

    def nvmlDeviceGetUUID(self, handle: int) -> str:  # noqa: N802
        return f"GPU-{handle}aaa"

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(total=self.totals[handle], used=0)


@pytest.mark.parametrize(("visible", "expected_gib"), [(None, 80.0), ("1", 141.0), ("GPU-1", 141.0), ("1,0", 141.0), ("0", 80.0)])
def test_total_memory_is_the_visible_gpus(monkeypatch: pytest.MonkeyPatch, visible: str | None, expected_gib: float) -> None:
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    nvml = FakeNvml()
    assert gpu_total_memory_gib(nvml) == expected_gib
    assert nvml.shut


def test_no_visible_gpu_means_no_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")
    assert gpu_total_memory_gib(FakeNvml()) is None
