"""Periodic all-thread stack dumps of a server process: where its start-up or a stall spends its time.

Off unless `AUTOTUNE_DUMP_STACKS_EVERY_S` is set in the environment of `autotune serve`. With
`AUTOTUNE_DUMP_STACKS_DURING=module:Class.method` the dumps run only while that callable runs (e.g.
`vllm.renderers.base:BaseRenderer._warmup_mm_processor`, vLLM's multimodal warm-up), so the measured window after
the start is untouched; otherwise they run for a fixed time from the import. vLLM's processes inherit it;
each process that imports `serving.vllm_middleware` (the launcher, which is vLLM's only API server when
`api_server_count` is 1, and every API server otherwise, before vLLM's multimodal warm-up) then writes every other
thread's Python stack to stderr (the server log) every that many seconds, for `AUTOTUNE_DUMP_STACKS_FOR_S` seconds
(default 180: a whole vLLM start). A Python thread reads `sys._current_frames()`: no ptrace, so it works where
py-spy cannot attach (the GPU host's sandbox). Not `faulthandler.dump_traceback_later`: its watchdog walks other
threads' frames without the GIL, and crashed vLLM's API server with a segmentation fault.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from typing import TextIO

from autotune.observe.sampler import PeriodicSampler

EVERY_ENV = "AUTOTUNE_DUMP_STACKS_EVERY_S"
FOR_ENV = "AUTOTUNE_DUMP_STACKS_FOR_S"
DURING_ENV = "AUTOTUNE_DUMP_STACKS_DURING"
DEFAULT_FOR_S = 180.0
HEADER = "autotune stack dump"

log = logging.getLogger(__name__)
_started: StackDumper | None = None


class StackDumper(PeriodicSampler[None, None]):
    """Writes the Python stack of every thread but its own to `out`, each interval, until `duration_s` has passed."""

    thread_name = "autotune-stack-dumper"

    def __init__(self, *, interval_s: float, duration_s: float, out: TextIO) -> None:
        super().__init__(interval_s=interval_s)
        self._out = out
        self._t0 = time.monotonic()
        self._until = self._t0 + duration_s

    def sample_once(self) -> None:
        now = time.monotonic()
        if now > self._until:
            self._stop.set()
            return
        names = {t.ident: t.name for t in threading.enumerate()}
        me = threading.get_ident()
        lines = [f"{HEADER} pid {os.getpid()} at +{now - self._t0:.1f} s"]
        for ident, frame in sys._current_frames().items():
            if ident != me:
                lines.append(f"  thread {names.get(ident, ident)}:")
                lines.extend(line.rstrip("\n") for line in traceback.format_stack(frame))
        self._out.write("\n".join(lines) + "\n")
        self._out.flush()

    def summarize(self, start: float, end: float) -> None:
        return None


def start_from_environment(environ: Mapping[str, str] = os.environ, out: TextIO | None = None) -> bool:
    """Start the dumps (once per process) when EVERY_ENV is set; True when armed. Bad values: a warning."""
    global _started
    every = environ.get(EVERY_ENV)
    if not every:
        return False
    if _started is not None:
        return True
    stream = out or sys.stderr
    try:
        period, duration = float(every), float(environ.get(FOR_ENV, DEFAULT_FOR_S))
        if period <= 0 or duration <= 0:
            raise ValueError("must be > 0")
    except ValueError as exc:
        log.warning("%s=%r / %s=%r ignored: %s (seconds > 0 expected)", EVERY_ENV, every, FOR_ENV, environ.get(FOR_ENV), exc)
        return False
    if during := environ.get(DURING_ENV):
        try:
            _dump_while_running(during, period, stream)
        except (ImportError, AttributeError, ValueError) as exc:
            log.warning("%s=%r ignored: %s (module:Class.method expected)", DURING_ENV, during, exc)
            return False
        _started = StackDumper(interval_s=period, duration_s=duration, out=stream)  # armed, not started
        print(f"autotune: stack dumps every {period:g} s while {during} runs (pid {os.getpid()})", file=stream, flush=True)
        return True
    _started = StackDumper(interval_s=period, duration_s=duration, out=stream)
    print(f"autotune: stack dumps every {period:g} s for {duration:g} s (pid {os.getpid()})", file=stream, flush=True)
    _started.start()
    return True


def _dump_while_running(target: str, period: float, out: TextIO) -> None:
    """Replace `module:Owner.attr` with a wrapper that dumps stacks while the original runs."""
    module_name, sep, qualname = target.partition(":")
    if not sep or not qualname:
        raise ValueError("no ':' between module and callable")
    owner: object = importlib.import_module(module_name)
    *path, attr = qualname.split(".")
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, attr)

    @functools.wraps(original)
    def wrapper(*args: object, **kwargs: object) -> object:
        dumper = StackDumper(interval_s=period, duration_s=float("inf"), out=out)
        dumper.start()
        try:
            return original(*args, **kwargs)
        finally:
            dumper.stop()

    setattr(owner, attr, wrapper)
