"""Shared pytest setup. Helpers coordinate by only appending fixtures/hooks here.

`tests/` is on sys.path (pytest's rootdir-less "prepend" import mode), so shared
helpers import as `from helpers.servers import running_server`.
"""

from __future__ import annotations

import functools
import socket
import threading
from collections.abc import Iterator

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
    run_long_files_first(items)
    if gpu_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs an NVIDIA GPU (NVML found none)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


def run_long_files_first(items: list[pytest.Item]) -> None:
    """Files that hold a `slow` test first, each file's tests kept together and in order: `--dist loadfile` hands
    files to the two workers in this order, so the minutes-long ones start at once and the short ones fill in at the
    end, instead of one worker running a late long file while the other idles."""
    long_files = {item.path for item in items if "slow" in item.keywords}
    items.sort(key=lambda item: item.path not in long_files)  # stable: collection order otherwise


@pytest.fixture
def tripwire() -> Iterator[tuple[int, list[object]]]:
    """A loopback listener that records every connection made to it: (port, accepted peers)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.1)
    accepted: list[object] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, peer = listener.accept()
            except OSError:
                continue
            accepted.append(peer)
            connection.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1], accepted
    stop.set()
    thread.join(timeout=2)
    listener.close()
