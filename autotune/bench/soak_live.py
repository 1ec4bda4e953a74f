"""The soak's windows told while it runs: a line per window as soon as its requests have finished.

The soak's record (`soak.json`) is written at the end of the run, since the client processes hand over their requests
only then. A soak whose machine is taken back first would lose every latency; so the soak passes `LiveWindows` to the
benchmark as its progress reporter, which hears of each request as it finishes and prints, once a window's requests
are done (a request sent `CLOSE_AFTER_S` past the window's end has finished), a line such as

    soak: window 300-506 s: 12278 sent, 0 failed, p99 TTFT 215.3 ms, p99 E2E 3790.1 ms; 30111 done so far, 0 failed

which `autotune soak-progress` reads back (autotune.bench.soak_progress). The last window ends with the run, in the
record. The figures are the record's (the same percentile over the same send-time windows), less a request that
finishes later than `CLOSE_AFTER_S` after its window's end.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from autotune.bench.progress import DoneRequest
from autotune.bench.soak_windows import SoakWindow, request_figures, window_spans

CLOSE_AFTER_S = 30.0
_WINDOW_LINE = re.compile(
    r"^soak: window (?P<start>\d+(?:\.\d+)?)-(?P<end>\d+(?:\.\d+)?) s(?P<settling> \(settling\))?: (?P<sent>\d+) sent, "
    r"(?P<failed>\d+) failed, p99 TTFT (?P<ttft>\S+) ms, p99 E2E (?P<e2el>\S+) ms"
)


def window_line(window: SoakWindow, done: int, failed: int) -> str:
    """The line told for a closed window (`done`, `failed`: the run's requests so far)."""
    return (f"soak: window {window.start_s:g}-{window.end_s:g} s{' (settling)' if window.settling else ''}: {window.sent} sent, "
            f"{window.failed} failed, p99 TTFT {window.ttft_p99_ms} ms, p99 E2E {window.e2el_p99_ms} ms; "
            f"{done} done so far, {failed} failed")


def parse_window_line(line: str) -> SoakWindow | None:
    """The window a `window_line` told (its memory and descriptors are not in it), or None for any other line."""
    match = _WINDOW_LINE.match(line.strip())
    if match is None:
        return None

    def latency(text: str) -> float | None:
        return None if text == "None" else float(text)

    return SoakWindow(
        start_s=float(match["start"]), end_s=float(match["end"]), settling=match["settling"] is not None,
        sent=int(match["sent"]), failed=int(match["failed"]), ttft_p99_ms=latency(match["ttft"]),
        e2el_p99_ms=latency(match["e2el"]),
    )


class LiveWindows:
    """A `ProgressReporter` (autotune.bench.progress) that tells each soak window once its requests are done."""

    def __init__(self, *, duration_s: float, window_s: float, settle_s: float, report: Callable[[str], None]) -> None:
        self.spans = window_spans(duration_s=duration_s, window_s=window_s, settle_s=settle_s)
        self.settling = settle_s > 0
        self.report = report
        self.phase("", None)

    def phase(self, label: str, total: int | None) -> None:
        """A new measured run (the benchmark re-runs a saturated one with more client processes): start over."""
        self.done: list[DoneRequest] = []
        self.cut_off = 0
        self.told = 0  # windows told so far
        self.latest_send_s = 0.0

    def advance(self, done: DoneRequest | None = None) -> None:
        if done is None:
            self.cut_off += 1
            return
        self.done.append(done)
        self.latest_send_s = max(self.latest_send_s, done.send_time_s)
        while self.told < len(self.spans) - 1 and self.latest_send_s >= self.spans[self.told][1] + CLOSE_AFTER_S:
            self.report(self._line(self.told))
            self.told += 1

    def close(self) -> None: ...

    def _line(self, index: int) -> str:
        begin, end = self.spans[index]
        inside = [d for d in self.done if begin <= d.send_time_s < end]
        window = SoakWindow(start_s=round(begin, 3), end_s=round(end, 3), settling=self.settling and index == 0,
                            **request_figures(inside))
        failed = sum(not d.success for d in self.done) + self.cut_off
        return window_line(window, len(self.done) + self.cut_off, failed)
