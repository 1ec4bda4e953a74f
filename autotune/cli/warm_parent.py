"""The warm parent: a long-lived process that has imported the server's modules once and forks each trial's server.

A program, like `python -m autotune.cli.serve` whose command it runs in each fork: hence the cli layer.

Started by `autotune.tune.warm_start.WarmParent` (once per tuner worker) as `python -m autotune.cli.warm_parent FD
MODULE...`: it imports the modules (for vLLM: vLLM's CLI and OpenAI server, torch and transformers through
`serving.vllm_middleware`), checks that CUDA was not initialized (a forked child could not use it), and then answers
requests on the socket FD, one JSON object a line:

- `{"op": "spawn", "argv": [...], "env": {...}, "log_path": "...", "cwd": "...", "cpus": [...] | null}` forks a child
  that leaves the parent's session (`setsid`: its own process group, as a cold start's server), dies with the parent
  (PR_SET_PDEATHSIG), runs on `cpus`, writes stdout and stderr to `log_path` and runs `autotune serve` with `argv`
  and exactly `env` as its environment; the answer is `{"pid": N}`.
- `{"op": "poll", "pid": N}` answers `{"exit_code": C}` (None while it runs; children are reaped here, their parent).

Nothing a config sets is decided here: the child gets its config from `argv` and its environment from `env`, like a
cold start. What cannot follow is an environment variable read while the modules were imported; the tuner starts
cold a trial whose environment differs from the parent's in such a variable (`warm_start.import_time_env_differs`).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
from typing import Any

from autotune.tune.server_process import die_with_parent
from serving.start_env import remember_start_environment


def preload(modules: list[str]) -> dict[str, Any]:
    """Import `modules`; what was imported, how long it took and whether CUDA was initialized on the way."""
    started = time.perf_counter()
    for name in modules:
        importlib.import_module(name)
    keep_process_titles_settable()
    torch = sys.modules.get("torch")
    cuda_initialized = bool(torch is not None and torch.cuda.is_initialized())
    return {"modules": modules, "import_s": round(time.perf_counter() - started, 3), "cuda_initialized": cuda_initialized,
            "pid": os.getpid(), "loaded_modules": len(sys.modules),
            "python_threads": threading.active_count(),  # > 1: an import started a thread, which no fork carries over
            "os_threads": _os_threads()}  # native ones too (a library's pool): what a fork could inherit locked


def keep_process_titles_settable() -> None:
    """Let the servers' processes title themselves (`VLLM::EngineCore`, which the CPU profile and the soak read roles
    from): setproctitle finds the command line's memory by walking back from the environment's first string, which a
    forked child's new environment (`_run_child`) no longer has; set up here, while the environment is still the one
    this process began with, it keeps what it found for every fork."""
    try:
        import setproctitle
    except ImportError:
        return  # not installed (vLLM requires it): no process sets a title
    setproctitle.getproctitle()


def _os_threads() -> int | None:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None  # not Linux


def _run_child(request: dict[str, Any], channel: socket.socket) -> int:
    """In the forked child: become the trial's server (never returns to the parent's loop)."""
    channel.close()
    os.setsid()
    die_with_parent()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    if request.get("cpus"):
        os.sched_setaffinity(0, request["cpus"])
    log = os.open(request["log_path"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.close(devnull)
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = ["autotune-serve", *request["argv"]]
    print(f"autotune serve: forked from the warm parent (pid {os.getppid()}), its modules already imported", flush=True)
    from autotune.observe.stacks.profiler import start_from_environment

    start_from_environment()  # --stack-profile-hz: what a cold start's sitecustomize does (serving/autostart)
    from autotune.cli.serve import main

    try:
        main()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


class _Children:
    """The servers this parent forked: reaped here, their exit codes kept for `poll`."""

    def __init__(self) -> None:
        self.exit_codes: dict[int, int | None] = {}

    def reap(self) -> None:
        for pid, code in self.exit_codes.items():
            if code is not None:
                continue
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                self.exit_codes[pid] = -1
                continue
            if done:
                self.exit_codes[pid] = os.waitstatus_to_exitcode(status)


def serve_requests(channel: socket.socket) -> None:
    """Answer spawn and poll requests until the tuner closes its end."""
    children = _Children()
    reader = channel.makefile("r", encoding="utf-8")
    for line in reader:
        request = json.loads(line)
        children.reap()
        if request["op"] == "spawn":
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    code = _run_child(request, channel)
                finally:
                    with contextlib.suppress(Exception):
                        sys.stdout.flush()
                        sys.stderr.flush()
                    os._exit(code)
            children.exit_codes[pid] = None
            answer: dict[str, Any] = {"pid": pid}
        elif request["op"] == "poll":
            answer = {"exit_code": children.exit_codes.get(int(request["pid"]), -1)}
        else:
            answer = {"error": f"unknown op {request['op']!r}"}
        channel.sendall((json.dumps(answer) + "\n").encode())


def main() -> None:
    remember_start_environment()  # before setproctitle overwrites /proc/self/environ, which every fork inherits
    channel = socket.socket(fileno=int(sys.argv[1]))
    try:
        info = preload(sys.argv[2:])
    except BaseException as exc:  # an import that fails: the tuner starts its servers cold, and says why
        info = {"error": f"{type(exc).__name__}: {exc}"}
    channel.sendall((json.dumps(info) + "\n").encode())
    if "error" in info or info["cuda_initialized"]:
        return
    serve_requests(channel)


if __name__ == "__main__":
    main()
