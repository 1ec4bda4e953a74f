"""Fixtures of the benchmark tests: the fake OpenAI server as a real process on loopback."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

FAKE_SERVER = Path(__file__).with_name("fake_openai_server.py")
START_DEADLINE_S = 20.0


@contextlib.contextmanager
def fake_server(*args: str) -> Iterator[str]:
    """Start the fake server with CLI `args`; yield its base URL once /health answers; stop it."""
    process = subprocess.Popen(
        [sys.executable, str(FAKE_SERVER), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "listening on" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        if not ready.wait(START_DEADLINE_S):
            raise RuntimeError(f"fake server did not start: {''.join(lines)}")
        url = next(line for line in lines if "listening on" in line).rsplit(" ", 1)[-1].strip()
        deadline = time.monotonic() + START_DEADLINE_S
        while httpx.get(f"{url}/health", timeout=2).status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("fake server never became healthy")
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture
def start_fake_server() -> Iterator[Callable[..., str]]:
    """Factory: `url = start_fake_server("--ttft-ms", "50")`; every server stops after the test."""
    with contextlib.ExitStack() as stack:
        yield lambda *args: stack.enter_context(fake_server(*args))


@pytest.fixture(scope="module")
def quick_server() -> Iterator[str]:
    """A shared fast server (2 ms per token) for tests that only need a working endpoint."""
    with fake_server("--ttft-ms", "2", "--itl-ms", "2") as url:
        yield url


@pytest.fixture(autouse=True)
def _image_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep generated images out of the user's cache (shared by the tests of one session)."""
    monkeypatch.setenv("AUTOTUNE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "autotune-cache"))
    os.environ.setdefault("AUTOTUNE_BENCH_TESTS", "1")
