"""Waiting on GPU memory around a trial: free enough before its server starts, released to the pre-trial level after.

Both poll NVML with a deadline and give up quietly (None) when NVML cannot tell.
"""

from __future__ import annotations

import logging
import time

from autotune.observe.gpu import gpu_memory_free_fraction, gpu_memory_used_mib
from autotune.tune import attrs

log = logging.getLogger(__name__)

POLL_S = 0.5


def used_mib() -> float | None:
    """GPU memory in use over every visible GPU; None when it cannot be read."""
    used = gpu_memory_used_mib()
    return None if used is None else float(sum(used))


def wait_for_free_gpu(wanted_fraction: float, timeout_s: float) -> str | None:
    """None once each visible GPU has `wanted_fraction` of its memory free (or NVML cannot tell), else why not.

    vLLM refuses to start when another process holds the memory (a previous server still exiting, another
    job): waiting here, then failing with an environmental reason, keeps that from being blamed on the config.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        free = gpu_memory_free_fraction()
        if free is None or not free or min(free) >= wanted_fraction:
            return None
        if time.monotonic() >= deadline:
            return (
                f"{attrs.GPU_BUSY}: only {100 * min(free):.0f}% of a GPU's memory is free after "
                f"{timeout_s:g} s, the config asks for gpu_memory_utilization {wanted_fraction:g} "
                "(other processes hold it; not the config's fault: it will be served again)"
            )
        time.sleep(POLL_S)


def wait_gpu_release(before_mib: float | None, timeout_s: float, tolerance_mib: float) -> tuple[bool | None, float | None]:
    """Poll GPU memory back to its pre-trial level (with a deadline): whether it came back and the last reading
    (MiB over every visible GPU); (None, None) when it cannot be read."""
    if before_mib is None:
        return None, None
    deadline = time.monotonic() + timeout_s
    while True:
        now_mib = used_mib()
        if now_mib is None:
            return None, None
        if now_mib <= before_mib + tolerance_mib:
            return True, now_mib
        if time.monotonic() >= deadline:
            log.warning("GPU memory not released after the trial: %.0f MiB used, %.0f MiB before", now_mib, before_mib)
            return False, now_mib
        time.sleep(POLL_S)
