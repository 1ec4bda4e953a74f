"""Shared pytest setup. Helpers coordinate by only appending fixtures/hooks here.

`tests/` is on sys.path (pytest's rootdir-less "prepend" import mode), so shared
helpers import as `from helpers.servers import running_server`.
"""

from __future__ import annotations

import functools

import pytest


@functools.cache
def gpu_available() -> bool:
    """True when NVML sees at least one NVIDIA GPU."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return pynvml.nvmlDeviceGetCount() > 0
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if gpu_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs an NVIDIA GPU (NVML found none)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
