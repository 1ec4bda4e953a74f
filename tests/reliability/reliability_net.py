"""Loopback plumbing for fault tests: a TCP proxy that can be cut and restored, an MLflow server process that
can be restarted."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from helpers.servers import MLFLOW_SERVER_ENV


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TcpProxy:
    """127.0.0.1:`port` -> 127.0.0.1:`target_port`. `cut()` closes the listener and every connection
    (clients then get 'connection refused': the service is unreachable); `restore()` listens again."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._connections |= {client, upstream}
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)


class MlflowServer:
    """`mlflow server` on loopback (SQLite store in `folder`), in its own process group; `stop()` then `start()`
    brings it back on the same port with the same store (a restart)."""

    def __init__(self, folder: Path, *, startup_timeout_s: float = 120) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.startup_timeout_s = startup_timeout_s
        self.log_path = folder / "mlflow-server.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self._process = process = subprocess.Popen(
                [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port),
                 "--workers", "1", "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow-server.db'}"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.folder,
                env={**os.environ, **MLFLOW_SERVER_ENV},
            )
        deadline = time.monotonic() + self.startup_timeout_s
        while not self.healthy():
            assert process.poll() is None, self.log_path.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.2)  # readiness poll with a deadline

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=2, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        """SIGTERM to the group (SIGKILL after 15 s); also ends workers it may have left in its group."""
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


@contextlib.contextmanager
def mlflow_server(folder: Path, *, startup_timeout_s: float = 120) -> Iterator[str]:
    """A started `MlflowServer`, stopped on exit; yields its URL."""
    with running_mlflow_server(folder, startup_timeout_s=startup_timeout_s) as server:
        yield server.url


@contextlib.contextmanager
def running_mlflow_server(folder: Path, *, startup_timeout_s: float = 120) -> Iterator[MlflowServer]:
    server = MlflowServer(folder, startup_timeout_s=startup_timeout_s)
    try:
        server.start()
        yield server
    finally:
        server.stop()
