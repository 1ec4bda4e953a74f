"""The simulated backend: our FastAPI app around a SimulatedEngine, under uvicorn."""

from __future__ import annotations

import importlib.util
import logging
import socket

import uvicorn

from autotune.config import TunedConfig
from serving.app import create_app
from serving.engines.faults import FaultPlan
from serving.engines.profile import SimulatorProfile
from serving.engines.simulated import SimulatedEngine
from serving.announce import announce_listening

log = logging.getLogger("autotune.serve")

STARTUP_FAILURE_EXIT_CODE = 3


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind before serving so that `--port 0` can report the real port."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(address)
    sock.set_inheritable(True)
    return sock


class SimulatedBackend:
    def run(self, tuned: TunedConfig) -> None:
        import os

        fault = FaultPlan.from_env(os.environ)
        profile = SimulatorProfile.load(tuned.simulator_profile)
        log.warning("simulator profile %s (%s)", profile.name, "calibrated" if profile.calibrated else "NOT calibrated")
        engine = SimulatedEngine(tuned.engine_config, profile, fault=fault)
        app = create_app(tuned, engine)
        settings = tuned.serving
        sock = bind_socket(settings.host, settings.port)
        config = uvicorn.Config(
            app,
            loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
            http="httptools" if importlib.util.find_spec("httptools") else "h11",
            log_level=settings.log_level,
            access_log=settings.log_level == "debug",
            lifespan="on",
            timeout_graceful_shutdown=2,
            timeout_keep_alive=settings.http_keep_alive_s,
            log_config=None,
        )
        server = uvicorn.Server(config)
        announce_listening(settings.host, sock.getsockname()[1])
        server.run(sockets=[sock])
        if not server.started:
            raise SystemExit(STARTUP_FAILURE_EXIT_CODE)
