"""Reads a server's stack profile back (the folded files `autotune.observe.stacks.profiler` writes): per window, per
process, per thread, the share of samples in which the thread was busy (its innermost Python frame is not a known
wait: a lock, a queue, a selector, a socket, an idle event loop, a few known idle threads), the innermost frames it
was busy in ("self") and the functions on its stack ("inclusive"). A frame that calls into C (a CUDA
synchronization, a tokenizer, a sleep) is where that C time shows: a thread blocked in an unlisted C call counts as
busy in its caller.
"""

from __future__ import annotations

import gzip
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from autotune.base_models import StrictModel

TOP_FRAMES = 12
BUSY_THREAD_MIN_SHARE = 0.05
"""Threads busy in fewer samples than this get no frame lists (only their busy share)."""

_WAIT_LEAF = re.compile(
    r"(^|/)("
    r"threading\.py:(wait|_wait_for_tstate_lock|join|acquire)"
    r"|selectors\.py:(select|poll)"
    r"|queue\.py:get"
    r"|multiprocessing/connection\.py:(_recv|_recv_bytes|_poll|poll|wait)"
    r"|zmq/.*:(recv|recv_multipart|poll|_recv_copy|recv_pyobj)"
    r"|asyncio/runners\.py:run|uvloop/__init__\.py:run|asyncio/base_events\.py:(run_forever|_run_once)"
    r"|concurrent/futures/thread\.py:_worker|socket\.py:(accept|recv_into|recv)"
    # our own sampling threads; the old module names keep recorded profiles reading the same
    r"|sampler\.py:_loop|profiler\.py:_loop|sampling\.py:_loop|stack_profile\.py:_loop"
    # threads idle in C calls: zmq's garbage collector, vLLM's usage reporter (time.sleep), the multiprocessing
    # resource tracker (a pipe read)
    r"|zmq/utils/garbage\.py:run|vllm/usage/usage_lib\.py:_report_continuous_usage"
    r"|multiprocessing/resource_tracker\.py:main"
    r")$"
)
FOLDED_HEADER = re.compile(r"^# samples (?P<samples>\d+) hz (?P<hz>[0-9.e+-]+) pid (?P<pid>\d+) (?P<state>open|closed)")


class FrameShare(StrictModel):
    frame: str
    share: float
    """Of the thread's samples in the window."""


class ThreadProfile(StrictModel):
    name: str
    samples: int
    busy_share: float
    self_frames: list[FrameShare]
    inclusive_frames: list[FrameShare]


class ProcessProfile(StrictModel):
    title: str
    pid: int
    samples: int
    hz: float
    complete: bool
    """False: the process did not close its file (it died or was killed during the window)."""
    threads: list[ThreadProfile]


class WindowProfile(StrictModel):
    label: str
    processes: list[ProcessProfile]


class StackProfileSummary(StrictModel):
    directory: str
    windows: list[WindowProfile]


def is_closed(path: Path) -> bool:
    """The process marked its folded file closed (the window is over for it, the file is final)."""
    try:
        with path.open() as f:
            return f.readline().rstrip().endswith(" closed")
    except OSError:
        return False


def is_wait(frame: str) -> bool:
    return bool(_WAIT_LEAF.search(frame))


def _top(counter: Counter[str], total: int) -> list[FrameShare]:
    return [FrameShare(frame=f, share=round(n / total, 4)) for f, n in counter.most_common(TOP_FRAMES)]


def read_folded(path: Path) -> list[str]:
    """A folded file's lines (`.folded` or gzipped `.folded.gz`, as recorded runs keep them)."""
    data = path.read_bytes()
    return (gzip.decompress(data) if path.suffix == ".gz" else data).decode().splitlines()


def folded_stacks(lines: list[str]) -> Iterator[tuple[str, list[str], int]]:
    """(thread, frames root first, samples) per stack line of a folded file (its header line skipped)."""
    for line in lines[1:]:
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            thread, *frames = stack.split(";")
            yield thread, frames, int(count)


def profile_process(path: Path) -> ProcessProfile | None:
    """One process's folded file: per-thread busy share and top frames; None when it has no samples."""
    lines = read_folded(path)
    header = FOLDED_HEADER.match(lines[0]) if lines else None
    if header is None or int(header["samples"]) == 0:
        return None
    samples = int(header["samples"])
    per_thread: dict[str, dict[str, Counter[str]]] = {}
    for thread, frames, n in folded_stacks(lines):
        counters = per_thread.setdefault(thread, {"all": Counter(), "self": Counter(), "inclusive": Counter()})
        counters["all"]["samples"] += n
        leaf = frames[-1] if frames else "(no Python frame)"
        if is_wait(leaf):
            counters["all"]["wait"] += n
            continue
        counters["self"][leaf] += n
        for frame in set(frames):
            counters["inclusive"][frame] += n
    threads = []
    for name, counters in per_thread.items():
        seen = counters["all"]["samples"]
        busy = seen - counters["all"]["wait"]
        busy_share = busy / seen if seen else 0.0
        detailed = busy_share >= BUSY_THREAD_MIN_SHARE
        threads.append(
            ThreadProfile(
                name=name,
                samples=seen,
                busy_share=round(busy_share, 4),
                self_frames=_top(counters["self"], seen) if detailed else [],
                inclusive_frames=_top(counters["inclusive"], seen) if detailed else [],
            )
        )
    threads.sort(key=lambda t: t.busy_share * t.samples, reverse=True)
    title = path.name.removesuffix(".gz").rsplit(".", 2)[0]
    return ProcessProfile(
        title=title, pid=int(header["pid"]), samples=samples, hz=float(header["hz"]),
        complete=header["state"] == "closed", threads=threads,
    )


def summarize_stack_profile(directory: Path) -> StackProfileSummary:
    """Every window folder under `directory`, its processes by samples (the busiest first)."""
    windows = []
    for folder in sorted(p for p in directory.iterdir() if p.is_dir()):
        files = sorted([*folder.glob("*.folded"), *folder.glob("*.folded.gz")])
        processes = [p for f in files if (p := profile_process(f)) is not None]
        processes.sort(key=lambda p: max((t.busy_share for t in p.threads), default=0.0), reverse=True)
        windows.append(WindowProfile(label=folder.name, processes=processes))
    return StackProfileSummary(directory=str(directory), windows=windows)
