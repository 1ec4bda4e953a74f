"""Each measured window of `autotune bench`, as it ends: one line on stderr and, with `--output R`, one JSON line in
R's `.windows.jsonl` beside it.

The result file is written once the whole run has ended; a run cut short (a lease's end, Ctrl-C, a kill between two
120 s windows) keeps here the windows it finished, with their verdicts, instead of nothing.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ValidationError
from rich.console import Console

from autotune.bench.schemas import Summary

SUFFIX = ".windows.jsonl"


class LoggedWindow(BaseModel):
    """One line of the log: a window's summary and whether the server's engine was simulated."""

    simulated: bool
    window: Summary


def windows_path(output: Path) -> Path:
    """`sustained.json` (or `.json.gz`) -> `sustained.windows.jsonl` in the same folder."""
    name = output.name.removesuffix(".gz").removesuffix(".json")
    return output.with_name(name + SUFFIX)


def describe_window(number: int, summary: Summary, simulated: bool = False) -> str:
    load = (
        f"{summary.offered_rate_rps:.2f} req/s offered" if summary.offered_rate_rps is not None
        else f"concurrency {summary.concurrency}" if summary.concurrency is not None else "load"
    )
    verdict = summary.steady.verdict if summary.steady is not None else "no SLO verdict (not a steady window)"
    label = "SIMULATED engine (not a GPU measurement): " if simulated else ""
    return (
        f"{label}window {number}: {load}, {summary.throughput_rps:.2f} completed/s, {summary.failed} failed, "
        f"p99 TTFT {_ms(summary.ttft_ms.p99, 0)} / TPOT {_ms(summary.tpot_ms.p99, 1)}: {verdict}"
    )


def _ms(value: float | None, decimals: int) -> str:
    return "n/a" if value is None else f"{value:,.{decimals}f} ms"


class WindowLog:
    """Called with each window's summary as the window ends (`run_benchmark(on_window=...)`)."""

    def __init__(self, path: Path | None, console: Console) -> None:
        self.path = path
        self.console = console
        self.count = 0
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")  # this run's windows only

    def __call__(self, summary: Summary, simulated: bool) -> None:
        self.count += 1
        if self.path is not None:
            with self.path.open("a") as stream:
                stream.write(LoggedWindow(simulated=simulated, window=summary).model_dump_json() + "\n")
        self.console.print(describe_window(self.count, summary, simulated), highlight=False, soft_wrap=True)


def read_windows(path: Path) -> list[LoggedWindow]:
    """The windows a run logged, in order (a run cut short: those it finished). A last line cut off mid-write (the
    run killed while appending it) is left out; an unreadable line before it is an error."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    windows = []
    for number, line in enumerate(lines, 1):
        try:
            windows.append(LoggedWindow.model_validate_json(line))
        except ValidationError:
            if number < len(lines):
                raise
    return windows
