"""A throwaway PostgreSQL server for the scale-out tests (tests/helpers/postgres.py): one for the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers.postgres import PostgresServer


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with PostgresServer.running() as server:
        yield server.url
