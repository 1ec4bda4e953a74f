"""A throwaway PostgreSQL server for the scale-out tests: initdb in a temporary folder, 127.0.0.1 on a free port.

Debian's binaries (/usr/lib/postgresql/<v>/bin, `scripts/ci-services.sh` installs them); run as the
`postgres` user when the tests run as root. Skipped when the binaries are missing.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tune"))

READY_TIMEOUT_S = 30.0


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    bin_dir = _bin_dir()
    if bin_dir is None:
        if os.environ.get("CI"):  # CI installs them (scripts/ci-services.sh): a skip there would hide the test
            pytest.fail("PostgreSQL binaries missing in CI: scripts/ci-services.sh should have installed them")
        pytest.skip("PostgreSQL binaries missing (run scripts/ci-services.sh)")
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="autotune-pg-"))
    if as_postgres:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", _free_port()
    run = lambda *args: subprocess.run([*as_postgres, *args], check=True, capture_output=True, timeout=60)  # noqa: E731
    run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200"
    run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "postgres.log"), "-o", options, "start")
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while subprocess.run([str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True).returncode:
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL not ready in {READY_TIMEOUT_S} s: {(root / 'postgres.log').read_text()[-2000:]}")
            time.sleep(0.1)  # readiness poll with a deadline
        run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "autotune")
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/autotune"
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)
