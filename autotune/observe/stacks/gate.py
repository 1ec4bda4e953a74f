"""The load generator's side of the server's stack profile: the gate file that starts and stops the recording.

`StackProfileGate` writes the measured window's label to `<dir>/window` as the window starts and removes it as
it ends; each server process (`autotune.observe.stacks.profiler`) then counts its threads' stacks into
`<dir>/<label>/<title>.<pid>.folded`, read back by `autotune.observe.stacks.reader`.
"""

from __future__ import annotations

import time
from pathlib import Path

from autotune.observe.stacks.profiler import GATE_NAME, START_WINDOW
from autotune.observe.stacks.reader import is_closed

__all__ = ["START_WINDOW", "StackProfileGate"]

CLOSE_WAIT_S = 3.0
CLOSE_POLL_S = 0.02


class StackProfileGate:
    """Opens (writes the label) and closes (removes) the gate file that the server processes poll."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / GATE_NAME
        directory.mkdir(parents=True, exist_ok=True)

    def open(self, label: str) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(label)
        tmp.replace(self.path)

    def close(self, label: str, wait_s: float = CLOSE_WAIT_S) -> list[str]:
        """Remove the gate, then poll until every process that recorded the window marked its file closed
        (each notices within one sample interval); the files still open after `wait_s` (a dead process) are returned."""
        self.path.unlink(missing_ok=True)
        deadline = time.monotonic() + wait_s
        while True:
            still_open = [f.name for f in (self.directory / label).glob("*.folded") if not is_closed(f)]
            if not still_open or time.monotonic() > deadline:
                return still_open
            time.sleep(CLOSE_POLL_S)
