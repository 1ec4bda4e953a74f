"""Progress display of a benchmark run (a rich bar on stderr), behind a small Protocol."""

from __future__ import annotations

from typing import NamedTuple, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class DoneRequest(NamedTuple):
    """What a progress display learns of one finished request of a window, as it finishes (a long run's live view;
    the run's records come at its end)."""

    send_time_s: float  # seconds since the window's start
    success: bool
    ttft_ms: float | None
    e2el_ms: float | None


class ProgressReporter(Protocol):
    def phase(self, label: str, total: int | None) -> None: ...
    def advance(self, done: DoneRequest | None = None) -> None:
        """One more request of the window finished (`done`: None for one cut off when its window stopped waiting)."""
    def close(self) -> None: ...


class NoProgress:
    def phase(self, label: str, total: int | None) -> None: ...
    def advance(self, done: DoneRequest | None = None) -> None: ...
    def close(self) -> None: ...


class RichProgress:
    def __init__(self, console: Console | None = None) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
            transient=False,
        )
        self._task: int | None = None
        self._progress.start()

    def phase(self, label: str, total: int | None) -> None:
        if self._task is not None:
            self._progress.stop_task(self._task)
        self._task = self._progress.add_task(label, total=total)

    def advance(self, done: DoneRequest | None = None) -> None:
        if self._task is not None:
            self._progress.advance(self._task)

    def close(self) -> None:
        self._progress.stop()
