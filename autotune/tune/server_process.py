"""`autotune serve` as a child process: started in its own process group, stopped as a group.

Production code (the tuner starts one per trial) and the test helper. The server dies with its
parent (PR_SET_PDEATHSIG=SIGTERM on Linux) and `kill_process_group` cleans up one left behind.
Start-up failures tell a crash from a timeout: a crash is a process that exited, or that printed
`serving.announce.START_FAILED_LINE` (its engine failed to start; it is exiting); a timeout is a process that did
neither before the deadline and had not failed by the time it was stopped. The second test matters on a slow
machine: a server whose engine fails just as the deadline passes is still exiting then (uvicorn holds the stop
signal until its start-up ends), and its failure is a crash, not a timeout.
Note: PDEATHSIG fires when the *thread* that started the child exits; start servers from a
long-lived thread (the main thread).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Literal, Protocol

import httpx

from autotune.config import EngineKind
from autotune.errors import AutotuneError
from serving.announce import START_FAILED_LINE

_LISTENING = re.compile(r"autotune serve listening on http://(\S+):(\d+)")
_START_FAILED = START_FAILED_LINE.encode()
_PR_SET_PDEATHSIG = 1
_POLL_INTERVAL_S = 0.05


class ChildProcess(Protocol):
    """What `ServerProcess` uses of the server's process: a `subprocess.Popen`, or a warm parent's fork."""

    pid: int

    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...


class Launcher(Protocol):
    """Starts `autotune serve ARGV` in its own process group and session (`autotune.tune.warm_start.WarmParent`).

    Raises `LaunchError` when it cannot (its warm parent has gone): the server then starts cold."""

    def launch(
        self, argv: Sequence[str], *, env: Mapping[str, str], log_path: Path, cpus: Sequence[int] | None
    ) -> ChildProcess: ...


class LaunchError(AutotuneError):
    """A launcher could not start the server; `ServerProcess` starts it as a new interpreter instead."""


class ServerStartError(AutotuneError):
    def __init__(self, reason: Literal["crashed", "timeout"], log_tail: str, exit_code: int | None) -> None:
        detail = f"exit code {exit_code}" if exit_code is not None else "still running"
        super().__init__(f"autotune serve {reason} during start-up ({detail}); last log lines:\n{log_tail}")
        self.reason: Literal["crashed", "timeout"] = reason
        self.log_tail = log_tail
        self.exit_code = exit_code


def server_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a server runs with: ours, unbuffered, then `extra` (also a warm parent's, with no `extra`)."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", **(extra or {})}


def die_with_parent() -> None:
    """preexec_fn: SIGTERM this child when the parent dies (Linux only; silently skipped elsewhere)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def process_group_exists(pgid: int) -> bool:
    """Whether any process of group `pgid` is still alive (zombies included)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_process_group(pgid: int, timeout_s: float = 10.0) -> bool:
    """SIGTERM the group, wait, then SIGKILL; True if something was there to kill. Never our own group."""
    if pgid <= 1 or pgid == os.getpgrp():
        return False
    if not process_group_exists(pgid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process_group_exists(pgid):
        _reap(pgid)
        time.sleep(_POLL_INTERVAL_S)
    if process_group_exists(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    return True


def _reap(pgid: int) -> None:
    """Collect exited members of the group that are our own children (else they linger as zombies)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-pgid, os.WNOHANG)[0] > 0:
            pass


def connect_host(host: str) -> str:
    """Where a client on this machine connects for a server bound to `host`."""
    bare = host.strip("[]")
    if bare in ("0.0.0.0", ""):
        return "127.0.0.1"
    if bare == "::":
        return "[::1]"
    return f"[{bare}]" if ":" in bare else bare


class ServerProcess:
    """Context manager around `python -m autotune.cli.serve --config FILE ...` (`autotune serve`)."""

    def __init__(
        self,
        config_path: Path,
        *,
        engine: EngineKind | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        log_path: Path,
        startup_timeout_s: float = 600.0,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        cpus: Sequence[int] | None = None,
        launcher: Launcher | None = None,
    ) -> None:
        args = ["--config", str(config_path)]
        if engine is not None:
            args += ["--engine", EngineKind(engine).value]
        args += ["--host", host, "--port", str(port), *extra_args]
        self._init(args, host=host, log_path=log_path, startup_timeout_s=startup_timeout_s, env=env, cpus=cpus,
                   launcher=launcher)

    @classmethod
    def from_serve_args(
        cls,
        serve_args: Sequence[str],
        *,
        log_path: Path,
        host: str = "127.0.0.1",
        startup_timeout_s: float = 600.0,
        env: Mapping[str, str] | None = None,
        cpus: Sequence[int] | None = None,
        launcher: Launcher | None = None,
    ) -> ServerProcess:
        """Any `autotune serve` arguments (e.g. `--model PATH --engine simulated --port 0`)."""
        self = cls.__new__(cls)
        self._init(list(serve_args), host=host, log_path=log_path, startup_timeout_s=startup_timeout_s, env=env, cpus=cpus,
                   launcher=launcher)
        return self

    def _init(
        self,
        serve_args: list[str],
        *,
        host: str,
        log_path: Path,
        startup_timeout_s: float,
        env: Mapping[str, str] | None,
        cpus: Sequence[int] | None = None,
        launcher: Launcher | None = None,
    ) -> None:
        self.serve_args = serve_args
        self.argv = [sys.executable, "-m", "autotune.cli.serve", *serve_args]
        self.launcher = launcher  # None: a cold start (a new interpreter); else forked by a warm parent
        self.launch_failure: str | None = None  # why the launcher could not start it (it then started cold)
        self.cpus = sorted(set(cpus)) if cpus else None  # the server and every process it starts run on these
        self.host = host
        self.log_path = Path(log_path)
        self.startup_timeout_s = startup_timeout_s
        self.env = server_environment(env)
        self.base_url = ""
        self.pid = 0
        self.pgid = 0
        self._process: ChildProcess | None = None
        self._log_file: IO[bytes] | None = None
        self._log_offset = 0  # how far _new_log_lines has read
        self._start_failed = False  # START_FAILED_LINE seen

    # -- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _preexec(self) -> None:
        """In the child before exec: die with the parent, run on `cpus` (inherited by everything it starts)."""
        die_with_parent()
        if self.cpus:
            os.sched_setaffinity(0, self.cpus)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self._process = self._launch(self._log_file)
        self.pid = self._process.pid
        self.pgid = self.pid  # start_new_session: the child leads its own group
        try:
            self._wait_ready(time.monotonic() + self.startup_timeout_s)
        except ServerStartError as exc:
            self.stop()
            self._new_log_lines()  # what the server printed while it was stopped
            if exc.reason == "timeout" and self._start_failed:
                raise ServerStartError("crashed", self.log_tail(), self.exit_code) from None
            raise
        except BaseException:
            self.stop()
            raise

    def _launch(self, log_file: IO[bytes]) -> ChildProcess:
        """The launcher's fork; a new interpreter without a launcher, or when the launcher failed (recorded in
        `launch_failure`: a warm parent that died after the trial chose it)."""
        if self.launcher is not None:
            try:
                return self.launcher.launch(self.serve_args, env=self.env, log_path=self.log_path, cpus=self.cpus)
            except LaunchError as exc:
                self.launch_failure = str(exc)
                self.launcher = None
        return subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
            preexec_fn=self._preexec if sys.platform.startswith("linux") else None,  # noqa: PLW1509
        )

    def _wait_ready(self, deadline: float) -> None:
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                self._new_log_lines()
                if not self.alive() or self._start_failed:
                    raise ServerStartError("crashed", self.log_tail(), self._exit_code_soon())
                if self.base_url:
                    try:
                        if client.get(f"{self.base_url}/health").status_code == 200:
                            return
                    except httpx.HTTPError:
                        pass
                time.sleep(_POLL_INTERVAL_S)
        self._new_log_lines()
        if not self.alive() or self._start_failed:
            raise ServerStartError("crashed", self.log_tail(), self._exit_code_soon())
        raise ServerStartError("timeout", self.log_tail(), None)

    def _new_log_lines(self) -> None:
        """Read the log's complete lines written since the last call: the listening line gives `base_url`,
        START_FAILED_LINE sets `_start_failed`."""
        try:
            with open(self.log_path, "rb") as handle:
                handle.seek(self._log_offset)
                data = handle.read()
        except OSError:
            return
        complete = data[: data.rfind(b"\n") + 1]
        self._log_offset += len(complete)
        if not self.base_url:
            match = _LISTENING.search(complete.decode(errors="replace"))
            if match is not None:
                self.base_url = f"http://{connect_host(self.host)}:{match.group(2)}"
        self._start_failed = self._start_failed or _START_FAILED in complete

    def _exit_code_soon(self, grace_s: float = 5.0) -> int | None:
        """The exit code of a server that is exiting by itself (None if it has not within `grace_s`)."""
        if self._process is None:
            return None
        try:
            return self._process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            return None

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def exit_code(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM the group, wait, then SIGKILL the group; idempotent."""
        process = self._process
        if process is not None:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pgid, signal.SIGTERM)
                try:
                    process.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.pgid, signal.SIGKILL)
                    process.wait(timeout=10)
            if process_group_exists(self.pgid):  # children the server left behind (vLLM frontends, engine core)
                kill_process_group(self.pgid, timeout_s=min(timeout_s, 5.0))
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    # -- logs ----------------------------------------------------------------------------------
    def _read_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 50) -> str:
        return "\n".join(self._read_log().splitlines()[-lines:])
