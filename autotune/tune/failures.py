"""Why a trial's server failed, read from its log: out of GPU memory, or the root-cause exception line.

vLLM's API server ends a failed start with "RuntimeError: Engine core initialization failed. See root
cause above."; the cause is the engine core's own exception, earlier in the log (e.g. "ValueError: Free
memory on device cuda:0 ... is less than desired GPU memory utilization"). These functions find it.
"""

from __future__ import annotations

import re

OOM_MARKERS = ("cuda out of memory", "out of memory", "outofmemoryerror")
_EXCEPTION_LINE = re.compile(r"\b((?:[A-Za-z_][\w.]*)?(?:Error|Exception)): (.+)$")
_WRAPPER_MESSAGES = ("See root cause above", "Engine core initialization failed", "terminated")
_LOG_PREFIX = re.compile(r"^(?:\([^)]*\)\s*)?(?:(?:ERROR|WARNING|INFO)\s+\S+\s+\S+\s+\[[^\]]*\]\s*)?")
MAX_REASON_CHARS = 300


def find_oom(text: str | None) -> str | None:
    """The log line reporting GPU out-of-memory, if any."""
    for line in (text or "").splitlines():
        if any(marker in line.lower() for marker in OOM_MARKERS):
            return line.strip()[:MAX_REASON_CHARS]
    return None


def root_cause(text: str | None) -> str | None:
    """The last exception line that is not a wrapper ("see root cause above"), without the log prefix."""
    found: str | None = None
    for line in (text or "").splitlines():
        match = _EXCEPTION_LINE.search(line)
        if match is None or any(wrapper in line for wrapper in _WRAPPER_MESSAGES):
            continue
        found = _LOG_PREFIX.sub("", line.strip())
    return found[:MAX_REASON_CHARS] if found else None


def last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:MAX_REASON_CHARS] if lines else "(no log output)"


def failure_summary(text: str | None) -> str:
    """What a reason should say: the root cause when the log has one, else its last line."""
    return root_cause(text) or last_line(text)
