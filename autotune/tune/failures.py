"""Why a trial's server failed, read from its log: out of GPU memory, an engine core that died, or the root-cause
exception line.

vLLM's API server ends a failed start with "RuntimeError: Engine core initialization failed. See root
cause above."; the cause is the engine core's own exception, earlier in the log (e.g. "ValueError: Free
memory on device cuda:0 ... is less than desired GPU memory utilization"). An engine core that dies while serving
(killed, crashed in a kernel) is announced by the API server's monitor before every request fails with the generic
"EngineDeadError: EngineCore encountered an issue. See stack trace (above) for the root cause.". These functions
find the line that says what happened.
"""

from __future__ import annotations

import re
from pathlib import Path

OOM_MARKERS = ("cuda out of memory", "out of memory", "outofmemoryerror")
_EXCEPTION_LINE = re.compile(r"\b((?:[A-Za-z_][\w.]*)?(?:Error|Exception)): (.+)$")
_WRAPPER_MESSAGES = ("See root cause above", "Engine core initialization failed", "terminated", "See stack trace (above)")
_RICH_BOX = "│╭╰❱"  # rich's traceback frame and pointer characters
# vLLM 0.24: MPClient's liveness monitor (one API server), and the multi-API-server launcher's check.
ENGINE_DEATH_MARKERS = ("engine core exited unexpectedly", "died unexpectedly")
# a line vLLM logged below ERROR: a warning may quote an exception that nothing raised (the start's "Found ulimit of
# ... `OSError: [Errno 24] Too many open files`"), so it is never a root cause
_BELOW_ERROR = re.compile(r"^(?:\([^)]*\)\s*)?(?:WARNING|INFO|DEBUG)\s")
_LOG_PREFIX = re.compile(r"^(?:\([^)]*\)\s*)?(?:(?:ERROR|WARNING|INFO)\s+\S+\s+\S+\s+\[[^\]]*\]\s*)?")
MAX_REASON_CHARS = 300


def find_oom(text: str | None) -> str | None:
    """The log line reporting GPU out-of-memory, if any, without the log prefix."""
    for line in (text or "").splitlines():
        if any(marker in line.lower() for marker in OOM_MARKERS) and not _is_rich_frame(line):
            return _LOG_PREFIX.sub("", line.strip())[:MAX_REASON_CHARS]
    return None


def _is_rich_frame(line: str) -> bool:
    """A line of a traceback drawn by rich (vLLM's API server prints one at a failed start): source code in a box,
    where `except CancelledError:` looks like an exception line but is not one."""
    return any(char in line for char in _RICH_BOX)


def find_engine_death(text: str | None) -> str | None:
    """vLLM's first line saying that an engine core process died while serving, without the log prefix."""
    for line in (text or "").splitlines():
        if any(marker in line for marker in ENGINE_DEATH_MARKERS):
            return _LOG_PREFIX.sub("", line.strip())[:MAX_REASON_CHARS]
    return None


def engine_death_reason(text: str | None) -> str | None:
    """"engine core died: <vLLM's line>" with the root-cause exception when the log has one; None without a death."""
    death = find_engine_death(text)
    if death is None:
        return None
    cause = root_cause(text)
    return f"engine core died: {death}" + (f" (root cause: {cause})" if cause and cause not in death else "")


def read_log(path: str | Path | None) -> str | None:
    """A whole server log (a root cause may be far above its tail); None when there is none or it is unreadable."""
    if path is None:
        return None
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


def root_cause(text: str | None) -> str | None:
    """The last exception line that is not a wrapper ("see root cause above") nor logged below ERROR, without the log
    prefix."""
    found: str | None = None
    for line in (text or "").splitlines():
        match = _EXCEPTION_LINE.search(line)
        if (match is None or any(wrapper in line for wrapper in _WRAPPER_MESSAGES) or _is_rich_frame(line)
                or _BELOW_ERROR.match(line.strip())):
            continue
        found = _LOG_PREFIX.sub("", line.strip())
    return found[:MAX_REASON_CHARS] if found else None


def last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:MAX_REASON_CHARS] if lines else "(no log output)"


def failure_summary(text: str | None) -> str:
    """What a reason should say: the root cause when the log has one, else its last line."""
    return root_cause(text) or last_line(text)
