"""What a result was measured on: package versions and hardware (no vLLM/torch import needed)."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

import autotune

_PACKAGES = ("aiohttp", "pydantic", "numpy", "vllm", "torch", "transformers")


def versions(driver: str | None = None) -> dict[str, str]:
    found = {"python": platform.python_version(), "autotune": autotune.__version__}
    for package in _PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    if driver:
        found["nvidia_driver"] = driver
    return found


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(gpus: list[str]) -> dict[str, Any]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python_executable": sys.executable,
        "gpus": gpus,
    }
