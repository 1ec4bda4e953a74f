"""A throwaway PostgreSQL server: initdb in a temporary folder, 127.0.0.1 on a free port, stoppable mid-test.

Debian's binaries (/usr/lib/postgresql/<v>/bin, `scripts/ci-services.sh` installs them); run as the
`postgres` user when the tests run as root. `stop()` then `start()` keeps the data folder and the port
(a database restart as a team's server would have one).

    with PostgresServer.running() as server:
        url = server.url  # postgresql+psycopg2://postgres@127.0.0.1:PORT/autotune
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

READY_TIMEOUT_S = 30.0
DATABASE = "autotune"


def bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def require_bin_dir() -> Path:
    """The binaries, else a skip (outside CI) or a failure (in CI, where a skip would hide the test)."""
    found = bin_dir()
    if found is None:
        if os.environ.get("CI"):  # CI installs them (scripts/ci-services.sh)
            pytest.fail("PostgreSQL binaries missing in CI: scripts/ci-services.sh should have installed them")
        pytest.skip("PostgreSQL binaries missing (run scripts/ci-services.sh)")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    def __init__(self, bins: Path) -> None:
        self.bins = bins
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.root = Path(tempfile.mkdtemp(prefix="autotune-pg-"))
        if self.as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self.data = self.root / "data"
        self.port = _free_port()
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.as_postgres, str(self.bins / tool), *args], check=True, capture_output=True, timeout=60)

    def ready(self) -> bool:
        probe = [str(self.bins / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)]
        return subprocess.run(probe, capture_output=True, check=False).returncode == 0

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "postgres.log"), "-o", options, "start")
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self.ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL not ready in {READY_TIMEOUT_S} s: {self.log()[-2000:]}")
            time.sleep(0.1)  # readiness poll with a deadline

    def stop(self, mode: str = "fast") -> None:
        """`fast`: the server ends every session (open transactions roll back) and shuts down cleanly."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def create_database(self) -> None:
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", DATABASE)

    def log(self) -> str:
        path = self.root / "postgres.log"
        return path.read_text(errors="replace") if path.is_file() else ""

    @classmethod
    @contextlib.contextmanager
    def running(cls) -> Iterator[PostgresServer]:
        server = cls(require_bin_dir())
        try:
            server.start()
            server.create_database()
            yield server
        finally:
            if server.ready():
                with contextlib.suppress(subprocess.SubprocessError):
                    server.stop()
            shutil.rmtree(server.root, ignore_errors=True)
