"""The two lines `autotune serve` prints on plain stdout for the process that started it (`ServerProcess`)."""

from __future__ import annotations

LISTENING_LINE = "autotune serve listening on http://{host}:{port}"
# Printed when the engine fails to start, before the process exits: `ServerProcess` reports a crash at start when it
# sees it, even when the exit comes after the start-up deadline (a slow machine) or after the stop it sends then.
START_FAILED_LINE = "autotune serve: the engine failed to start"


def announce_listening(host: str, port: int) -> None:
    """The parseable line `ServerProcess` waits for (plain stdout: never wrapped or decorated)."""
    shown = f"[{host}]" if ":" in host else host
    print(LISTENING_LINE.format(host=shown, port=port), flush=True)


def announce_start_failed(reason: BaseException) -> None:
    """The parseable line `ServerProcess` takes for a crash at start (plain stdout, like the listening line)."""
    print(f"{START_FAILED_LINE}: {type(reason).__name__}: {reason}", flush=True)
