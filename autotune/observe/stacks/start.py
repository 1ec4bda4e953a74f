"""Where a server's start spends its time, from the stack profile of its start (the window `START_WINDOW`).

For each process of the start (our launcher, vLLM's API servers, engine cores, workers), the main thread's functions
by the seconds they were on its stack. The trunk every sample shares (the interpreter's entry, `main`) says nothing,
so frames on the stack in more than `TRUNK_SHARE` of the thread's samples are left out; what remains is the split
below it: imports, model-class inspection, tokenizer and processor loading, compilation, and so on.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from autotune.base_models import StrictModel
from autotune.observe.stacks.reader import FOLDED_HEADER, folded_stacks, read_folded

TRUNK_SHARE = 0.9
TOP_FRAMES = 8
MAIN_THREAD = "MainThread"


class FrameSeconds(StrictModel):
    frame: str
    seconds: float


class StartProcess(StrictModel):
    title: str
    pid: int
    seconds: float
    """The main thread's samples over the sampling rate: how long the process was profiled during the start."""
    complete: bool
    top_frames: list[FrameSeconds]


def start_breakdown(window: Path) -> list[StartProcess]:
    """Every process of the start window, the longest-profiled first."""
    processes = []
    for path in sorted([*window.glob("*.folded"), *window.glob("*.folded.gz")]):
        lines = read_folded(path)
        header = FOLDED_HEADER.match(lines[0]) if lines else None
        if header is None:
            continue
        hz = float(header["hz"])
        inclusive: Counter[str] = Counter()
        samples = 0
        for thread, frames, n in folded_stacks(lines):
            if thread != MAIN_THREAD:
                continue
            samples += n
            for frame in set(frames):
                inclusive[frame] += n
        if not samples:
            continue
        below_trunk = [(f, n) for f, n in inclusive.most_common() if n <= TRUNK_SHARE * samples]
        processes.append(StartProcess(
            title=path.name.removesuffix(".gz").rsplit(".", 2)[0], pid=int(header["pid"]),
            seconds=round(samples / hz, 2), complete=header["state"] == "closed",
            top_frames=[FrameSeconds(frame=f, seconds=round(n / hz, 2)) for f, n in below_trunk[:TOP_FRAMES]],
        ))
    processes.sort(key=lambda p: p.seconds, reverse=True)
    return processes
