"""Periodic all-thread stack dumps of a server process: where its start-up or a stall spends its time.

Off unless `AUTOTUNE_DUMP_STACKS_EVERY_S` is set in the environment of `autotune serve` (vLLM's processes inherit it
and import this through `serving.vllm_middleware`, before vLLM's multimodal warm-up). Then `faulthandler` writes
every thread's Python stack to stderr (the server log) every that many seconds, for `AUTOTUNE_DUMP_STACKS_FOR_S`
seconds (default 60). It needs no ptrace, so it works where py-spy cannot attach (the GPU host's sandbox).
"""

from __future__ import annotations

import faulthandler
import logging
import os
import sys
import threading
from collections.abc import Mapping

EVERY_ENV = "AUTOTUNE_DUMP_STACKS_EVERY_S"
FOR_ENV = "AUTOTUNE_DUMP_STACKS_FOR_S"
DEFAULT_FOR_S = 60.0

log = logging.getLogger(__name__)


def start_from_environment(environ: Mapping[str, str] = os.environ) -> bool:
    """Start the dumps when EVERY_ENV is set; True when started. A bad value is logged and ignored."""
    every = environ.get(EVERY_ENV)
    if not every:
        return False
    try:
        period, duration = float(every), float(environ.get(FOR_ENV, DEFAULT_FOR_S))
        if period <= 0 or duration <= 0:
            raise ValueError("must be > 0")
    except ValueError as exc:
        log.warning("%s=%r / %s=%r ignored: %s (seconds > 0 expected)", EVERY_ENV, every, FOR_ENV, environ.get(FOR_ENV), exc)
        return False
    faulthandler.dump_traceback_later(period, repeat=True, file=sys.stderr)
    stop = threading.Timer(duration, faulthandler.cancel_dump_traceback_later)
    stop.daemon = True
    stop.start()
    print(f"autotune: stack dumps every {period:g} s for {duration:g} s (pid {os.getpid()})", file=sys.stderr, flush=True)
    return True
