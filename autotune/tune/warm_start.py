"""Warm starts (`autotune tune --warm-start`): each trial's server forked from a parent that imported its modules once.

A cold start runs `python -m autotune.cli.serve`, which imports the engine's modules again for every trial (for
vLLM: vLLM, torch and transformers; 20 s of the "launcher" phase of a start on a fresh H100, 2026-12-05). A tuner
worker with `--warm-start` starts one `autotune.cli.warm_parent` that imports them once; each trial's server is then
a fork of it (`WarmParent.launch`), and `ServerProcess` treats it as it treats a cold one: its own process group and
session, the same log, the same readiness wait, stopped and killed as a group. What vLLM starts below the server
imports afresh: `vllm serve` sets VLLM_WORKER_MULTIPROC_METHOD=spawn unless it is set (vLLM 0.24,
`entrypoints/serve/utils/api_utils.py:cli_env_setup`), so its engine cores are spawned, and API servers beyond the
first always are. VLLM_WORKER_MULTIPROC_METHOD=fork in the tuner's environment forks the engine cores from the warm
API server instead (vLLM's library default; scripts/gpu/trial_cost.sh FORK_ENGINE_CORES=1 measures it).

A trial starts cold, and says why, when the parent is not usable (an import failed, CUDA was initialized) or when
its server's environment differs from the parent's in a variable that takes effect at import
(`import_time_env_differs`: Python's own, vLLM's logging, torch's, the thread pools', Hugging Face's), since a
forked server cannot re-read those. The stack profiler (`--stack-profile-hz`) is started by the forked server itself.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from autotune.config import EngineKind
from autotune.tune.server_process import LaunchError, die_with_parent, server_environment
from serving.autostart import __file__ as autostart_init
from serving.start_env import engine_start_env

log = logging.getLogger(__name__)

PRELOAD: dict[EngineKind, tuple[str, ...]] = {
    EngineKind.SIMULATED: ("autotune.cli.serve", "serving.app", "uvicorn"),
    EngineKind.VLLM: (
        "autotune.cli.serve", "serving.app", "uvicorn", "serving.vllm_middleware",
        "vllm.entrypoints.cli.main", "vllm.entrypoints.openai.api_server",
    ),
}
IMPORT_TIME_ENV_PREFIXES = (
    "PYTHON", "VLLM_LOGGING", "VLLM_CONFIGURE_LOGGING", "TORCH", "PYTORCH", "OMP_", "MKL_", "HF_", "TRANSFORMERS_",
    "TOKENIZERS_",
    "LD_", "MALLOC_", "GLIBC_TUNABLES",  # read by the loader and glibc's allocator when a process starts: a fork keeps the parent's
)
AUTOSTART_DIR = str(Path(autostart_init).parent)
"""The stack profiler's folder (`--stack-profile-hz` puts it first on a server's PYTHONPATH): a forked server starts
the profiler itself, and the processes it spawns are new interpreters that read PYTHONPATH, so it does not count."""
WARM_PARENT_LOG = "warm-parent.log"  # in the study folder
READY_TIMEOUT_S = 600.0  # vLLM, torch and transformers from a cold disk take about a minute
_POLL_INTERVAL_S = 0.05


class WarmStartError(LaunchError):
    """The warm parent could not fork a server (it has gone, or its fork failed)."""


def import_time_env_differs(parent: Mapping[str, str], server: Mapping[str, str]) -> list[str]:
    """The variables read at import that the server's environment sets differently from the parent's."""
    names = {n for n in (*parent, *server) if n.startswith(IMPORT_TIME_ENV_PREFIXES)}
    return sorted(n for n in names if _as_imported(n, parent.get(n)) != _as_imported(n, server.get(n)))


def _as_imported(name: str, value: str | None) -> str | None:
    if name != "PYTHONPATH" or value is None:
        return value
    return os.pathsep.join(p for p in value.split(os.pathsep) if p != AUTOSTART_DIR) or None


class ForkedProcess:
    """A server forked by the warm parent, with the part of `subprocess.Popen` that `ServerProcess` uses."""

    def __init__(self, parent: WarmParent, pid: int, args: Sequence[str]) -> None:
        self._parent = parent
        self.pid = pid
        self.args = list(args)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._parent.exit_code(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            time.sleep(_POLL_INTERVAL_S)
        return code


class WarmParent:
    """One `autotune.cli.warm_parent` process: started once, forks each trial's server, closed at the study's end.

    Start it from the tuner's main thread (it dies with the thread that started it, PR_SET_PDEATHSIG, and its servers
    die with it)."""

    def __init__(
        self, engine: EngineKind, log_path: Path, *, ready_timeout_s: float = READY_TIMEOUT_S,
        modules: Sequence[str] | None = None,
    ) -> None:
        self.modules = tuple(modules) if modules is not None else PRELOAD[engine]
        self.log_path = log_path
        self.env = server_environment(engine_start_env(engine))  # its forks start as a cold server would
        self.info: dict[str, Any] = {}
        self.unusable: str | None = None
        self._lock = threading.Lock()
        ours, theirs = socket.socketpair()
        self._channel = ours
        self._reader: IO[str] = ours.makefile("r", encoding="utf-8")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "wb") as log_file:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "autotune.cli.warm_parent", str(theirs.fileno()), *self.modules],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, env=self.env,
                pass_fds=[theirs.fileno()], preexec_fn=die_with_parent if sys.platform.startswith("linux") else None,  # noqa: PLW1509
            )
        theirs.close()
        started = time.monotonic()
        try:
            self._channel.settimeout(ready_timeout_s)
            self.info = json.loads(self._reader.readline() or "{}")
        except (TimeoutError, OSError, json.JSONDecodeError) as exc:
            self.info = {"error": f"no answer within {ready_timeout_s:g} s ({type(exc).__name__})"}
        finally:
            self._channel.settimeout(None)
        if "error" in self.info or not self.info:
            self.unusable = f"warm parent failed to import {', '.join(self.modules)}: {self.info.get('error', 'it exited')}"
        elif self.info.get("cuda_initialized"):
            self.unusable = "warm parent initialized CUDA while importing (a forked server could not use it)"
        if self.unusable:
            log.warning("warm start off: %s (servers start cold; %s)", self.unusable, log_path)
            self.close()
        else:
            log.info("warm parent pid %d: %d modules imported in %.1f s (%.1f s until ready), %d Python thread(s), "
                     "%s OS thread(s)", self._process.pid, self.info["loaded_modules"], self.info["import_s"],
                     time.monotonic() - started, self.info["python_threads"], self.info.get("os_threads"))

    @property
    def pid(self) -> int:
        return self._process.pid

    def cold_start_reason(self, server_env: Mapping[str, str]) -> str | None:
        """Why a server with this environment must start cold; None when it can be forked from this parent."""
        if self.unusable:
            return self.unusable
        if self._process.poll() is not None:
            return f"warm parent exited (code {self._process.returncode}; {self.log_path})"
        differs = import_time_env_differs(self.env, server_env)
        if differs:
            return f"its environment sets {', '.join(differs)} differently from the warm parent's (read at import)"
        return None

    def give_up(self, reason: str) -> None:
        """Fork no more servers: each later one starts cold, its trial saying why (`reason`; the parent stays until
        `close`)."""
        self.unusable = f"{reason}; warm start off for the rest of the study"
        log.warning("warm start off: %s", self.unusable)

    def launch(
        self, argv: Sequence[str], *, env: Mapping[str, str], log_path: Path, cpus: Sequence[int] | None
    ) -> ForkedProcess:
        """Fork `autotune serve ARGV` (the arguments after `python -m autotune.cli.serve`) with exactly `env`."""
        answer = self._ask({"op": "spawn", "argv": list(argv), "env": dict(env), "log_path": str(log_path),
                            "cwd": os.getcwd(), "cpus": list(cpus) if cpus else None})
        if "pid" not in answer:
            raise WarmStartError(f"warm parent could not start the server: {answer.get('error', answer)}")
        return ForkedProcess(self, int(answer["pid"]), ["autotune-serve", *argv])

    def exit_code(self, pid: int) -> int | None:
        if self._process.poll() is not None:
            return -1  # the parent is gone, and its servers with it (PR_SET_PDEATHSIG)
        try:
            code = self._ask({"op": "poll", "pid": pid}).get("exit_code")
        except WarmStartError:
            return -1  # the parent went between the check above and the question
        return None if code is None else int(code)

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            try:
                self._channel.sendall((json.dumps(request) + "\n").encode())
                line = self._reader.readline()
            except OSError as exc:
                raise WarmStartError(f"warm parent unreachable: {exc}") from None
        if not line:
            raise WarmStartError(f"warm parent exited (see {self.log_path})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self, timeout_s: float = 10.0) -> None:
        """Close the channel: the parent's loop ends and it exits (its servers, if any are left, get SIGTERM)."""
        self._reader.close()
        self._channel.close()
        try:
            self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
