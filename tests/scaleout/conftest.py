"""A throwaway PostgreSQL server for the scale-out tests (tests/helpers/postgres.py): one for the session."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.postgres import PostgresServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tune"))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with PostgresServer.running() as server:
        yield server.url
