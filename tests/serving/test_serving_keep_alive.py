"""How long `autotune serve` keeps an idle client connection (`serving.http_keep_alive_s`).

A client that keeps an idle connection longer than the server does may send its next request just as the server
closes it: "Connection reset by peer". `vllm bench serve` (60 s keep-alive) lost 4 of 2,754 requests that way against
vLLM's 5 s (experiments/sustained/2026-12-07-h100/), so the server's keep-alive is set longer than clients keep theirs.
"""

from __future__ import annotations

import select
import socket
import time
from pathlib import Path

from helpers.serving_testlib import write_simulated_config
from helpers.servers import running_server_process

from autotune.config import EngineConfig, ServingSettings, TunedConfig
from serving.engines.vllm_launcher import vllm_environment

KEEP_ALIVE_S = 2


def _get_health(sock: socket.socket) -> bytes:
    """One GET /health on the connection, read to the end of its body (Content-Length), so nothing is left unread."""
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        if not chunk:
            return response
        response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(4096)
    return response


def _closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed the connection (EOF), or None if it stayed open that long."""
    started = time.monotonic()
    readable, _, _ = select.select([sock], [], [], seconds)
    if readable and sock.recv(4096) == b"":
        return time.monotonic() - started
    return None


def test_an_idle_connection_stays_open_for_the_keep_alive_and_is_closed_after_it(tmp_path: Path) -> None:
    config = write_simulated_config(tmp_path / "tuned.yaml", serving=ServingSettings(http_keep_alive_s=KEEP_ALIVE_S))
    with running_server_process(["--config", str(config)]) as server:
        port = int(server.base_url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            assert _get_health(sock).startswith(b"HTTP/1.1 200")
            assert _closed_within(sock, KEEP_ALIVE_S / 2) is None  # idle for half the keep-alive: still open
            assert _get_health(sock).startswith(b"HTTP/1.1 200")  # and reused
            closed_after = _closed_within(sock, KEEP_ALIVE_S + 5)
            # closed by the server once the setting's time has passed (uvicorn's own default would be 5 s)
            assert closed_after is not None and KEEP_ALIVE_S / 2 <= closed_after <= KEEP_ALIVE_S + 1.5


def test_the_default_outlasts_the_clients_keep_alive_and_reaches_vllm_unless_the_env_sets_it() -> None:
    assert ServingSettings().http_keep_alive_s > 60  # `vllm bench serve` keeps 60 s, cloud load balancers 60 s
    env = vllm_environment(TunedConfig(engine_config=EngineConfig(model="/m")), "/x")
    assert env["VLLM_HTTP_TIMEOUT_KEEP_ALIVE"] == str(ServingSettings().http_keep_alive_s)
    shorter = TunedConfig(engine_config=EngineConfig(model="/m"), serving=ServingSettings(http_keep_alive_s=30))
    assert vllm_environment(shorter, "/x")["VLLM_HTTP_TIMEOUT_KEEP_ALIVE"] == "30"
    configured = TunedConfig(engine_config=EngineConfig(model="/m", env={"VLLM_HTTP_TIMEOUT_KEEP_ALIVE": "9"}))
    assert vllm_environment(configured, "/x")["VLLM_HTTP_TIMEOUT_KEEP_ALIVE"] == "9"
