"""Fixtures of the benchmark tests: the fake OpenAI server as a real process on loopback."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest
from fake_openai_server import launch as fake_server


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
