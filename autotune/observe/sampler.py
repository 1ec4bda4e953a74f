"""A background thread that samples something at a fixed interval, with a measured window to summarize.

Shared by the NVML GPU sampler (`autotune.observe.gpu`), the server CPU profile (`autotune.observe.cpu`) and the
stack dumps (`autotune.observe.stacks.dumps`). Subclasses implement `sample_once()` (store a sample stamped with
`time.monotonic()`) and `summarize(start, end)` (figures from the samples inside [start, end]).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Generic, TypeVar

SampleT = TypeVar("SampleT")
SummaryT = TypeVar("SummaryT")

STOP_JOIN_TIMEOUT_S = 5.0


class PeriodicSampler(Generic[SampleT, SummaryT]):
    thread_name = "autotune-sampler"

    def __init__(self, *, interval_s: float) -> None:
        self.interval_s = interval_s
        self._samples: list[SampleT] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._window: tuple[float | None, float | None] = (None, None)

    def sample_once(self) -> None:
        raise NotImplementedError

    def summarize(self, start: float, end: float) -> SummaryT | None:
        raise NotImplementedError

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.sample_once()
            except Exception:  # a sampler must never take the benchmark down; the gap shows in the sample count
                pass
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=STOP_JOIN_TIMEOUT_S)
            self._thread = None

    def mark_window_start(self) -> None:
        self._window = (time.monotonic(), None)

    def mark_window_end(self) -> None:
        self._window = (self._window[0], time.monotonic())

    def summary(self) -> SummaryT | None:
        """The figures of the marked window (unmarked ends: from the first / to the last sample)."""
        start, end = self._window
        return self.summarize(start if start is not None else -math.inf, end if end is not None else math.inf)

    def _snapshot(self) -> list[SampleT]:
        with self._lock:
            return list(self._samples)

    def _add(self, *samples: Any) -> None:
        with self._lock:
            self._samples.extend(samples)
