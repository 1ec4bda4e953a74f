"""Engine env values that only take effect when a process starts: `autotune serve` re-executes itself to apply them.

`autotune serve` runs vLLM in its own process and exports the config's `env` there (serving.launch). Most variables
are read when used, so that is enough. Some are read once, when a process starts: by the dynamic loader
(`LD_PRELOAD`, `LD_LIBRARY_PATH`), by glibc's allocator (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`, ...,
`GLIBC_TUNABLES`) and by the Python interpreter (`PYTHONMALLOC`, `PYTHONHASHSEED`, ...). Set after the start, they
would miss this process and every process vLLM forks from it (its engine cores and GPU workers, by default), and
reach only those it spawns: half a setting, silently. So when the config sets such a variable to a value this
process did not start with (its start environment: /proc/self/environ; in a warm parent's fork, the parent's, which
the parent remembers), `autotune serve` executes itself again, the same pid and arguments, with them set.

Some such values are autotune's own defaults for an engine (`ENGINE_START_ENV`): every process that starts a server
of that engine (`autotune serve`, a tuner trial's server, the warm parent trials are forked from) starts it with them,
and a config's `env` overrides each.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NoReturn

from autotune.config import EngineKind

log = logging.getLogger("autotune.serve")

START_TIME_VARIABLE = re.compile(r"^(LD_[A-Z_]+|MALLOC_[A-Z_]+|GLIBC_TUNABLES|PYTHON[A-Z_]+)$")
REEXECUTED_ENV = "AUTOTUNE_SERVE_REEXECUTED"  # set on the re-executed process: it never re-executes again
ENGINE_START_ENV: dict[EngineKind, dict[str, str]] = {
    # glibc's mmap threshold fixed at 128 KiB: blocks from that size up (a request's image tensors) are mmapped and
    # unmapped on free. Under glibc's default threshold, which rises to the largest block freed (up to 32 MiB), they
    # come from the heap, and the gaps they leave stay resident: vLLM's GPU workers' heap grows by GiBs under load
    # (the soaks in experiments/reliability/gpu-2026-12-07c-h100/ and gpu-2026-12-07d-h100/).
    EngineKind.VLLM: {"MALLOC_MMAP_THRESHOLD_": "131072"},
}


def engine_start_env(engine: EngineKind) -> dict[str, str]:
    """The start-time values a server of this engine starts with, unless its config's `env` sets them."""
    return dict(ENGINE_START_ENV.get(engine, {}))


def start_environment(proc_environ: Path = Path("/proc/self/environ")) -> dict[str, str] | None:
    """The environment this process was executed with (None where /proc does not tell it)."""
    try:
        raw = proc_environ.read_bytes()
    except OSError:
        return None
    pairs = (entry.split(b"=", 1) for entry in raw.split(b"\0") if b"=" in entry)
    return {key.decode(errors="replace"): value.decode(errors="replace") for key, value in pairs}


_remembered_start_environment: dict[str, str] | None = None


def remember_start_environment() -> None:
    """Keep this process's start environment for the servers it forks (the warm parent, first thing): a fork's
    /proc/self/environ shows the parent's memory, where setproctitle (which vLLM's processes title themselves with)
    writes the title over the environment's strings."""
    global _remembered_start_environment
    _remembered_start_environment = start_environment()


def start_time_values_missing(env: Mapping[str, str], started_with: Mapping[str, str]) -> dict[str, str]:
    """The values of `env` read only at a process's start that the process did not start with."""
    return {key: value for key, value in env.items() if START_TIME_VARIABLE.match(key) and started_with.get(key) != value}


def reexecute_if_needed(env: Mapping[str, str], argv: Sequence[str]) -> None:
    """Execute `python -m autotune.cli.serve ARGV` in place of this process, with `env` added to its environment, when
    `env` has start-time values it did not start with; return otherwise (and always after one re-execution)."""
    if os.environ.get(REEXECUTED_ENV) == "1":
        return
    started_with = _remembered_start_environment if _remembered_start_environment is not None else start_environment()
    missing = start_time_values_missing(env, os.environ if started_with is None else started_with)
    if missing:
        _reexecute(missing, env, argv)


def _reexecute(missing: Mapping[str, str], env: Mapping[str, str], argv: Sequence[str]) -> NoReturn:
    log.info("executing again with %s set: read only when a process starts (values not logged)", ", ".join(sorted(missing)))
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    command = [sys.executable, "-m", "autotune.cli.serve", *argv]
    os.execve(sys.executable, command, {**os.environ, **env, REEXECUTED_ENV: "1"})
