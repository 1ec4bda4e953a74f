"""A sampling profile of a server's Python threads over the measured windows, written from inside each process.

Where the CPU-side limit sits (API server, engine core, which function) needs more than CPU seconds per
process (`autotune.observe.cpu`): it needs where each process's threads are. py-spy cannot attach on
the GPU host (no ptrace in its sandbox), so each server process samples itself: a daemon thread reads
`sys._current_frames()` `AUTOTUNE_STACK_PROFILE_HZ` times a second (default 50; a sample costs tens of
microseconds) and counts every thread's stack in the folded format of flame graphs (`frame;frame;frame count`,
root first, the thread's name as the root).

It records only while the gate file `<AUTOTUNE_STACK_PROFILE_DIR>/window` exists; the load generator writes the
window's label there as a measured window starts and removes it as the window ends
(`autotune.observe.stacks.gate.StackProfileGate`), so start-up, warm-up and the pauses between windows are left
out. Each process writes `<dir>/<label>/<title>.<pid>.folded` every `FLUSH_S` seconds while recording (a killed
process loses at most that much) and, marked `closed`, when it sees the gate close.

Every process of the server gets it through `serving/autostart/sitecustomize.py` (the trial runner puts that
folder first on the server's PYTHONPATH), and a process forked from one that runs it starts its own
(`os.register_at_fork`), as vLLM's engine core is by default.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import sysconfig
import threading
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from types import CodeType, FrameType

DIR_ENV = "AUTOTUNE_STACK_PROFILE_DIR"
HZ_ENV = "AUTOTUNE_STACK_PROFILE_HZ"
GATE_NAME = "window"
START_WINDOW = "start"
"""The label of the server's start (the trial opens it before the server process exists and closes it once the
server answers): not a measured window, so never the one a trial reports."""
DEFAULT_HZ = 50.0
FLUSH_S = 2.0
MAX_DEPTH = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")
_SITE = re.compile(r".*/(?:site-packages|dist-packages|gpu-site)/")
_STDLIB = sysconfig.get_paths()["stdlib"].rstrip("/") + "/"

log = logging.getLogger(__name__)
_profiler: StackProfiler | None = None


def process_title() -> str:
    """vLLM's setproctitle title without its prefix (`EngineCore`, `APIServer_0`), else the command: `cli_serve`."""
    try:
        import setproctitle

        title = setproctitle.getproctitle()
    except ImportError:
        title = ""
    if "::" in title:
        return _UNSAFE.sub("_", title.split("::", 1)[1].split()[0])[:60]
    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("python")
    if program.name == "__main__.py":  # python -m autotune.cli serve: "cli serve"
        name, command = program.parent.name, sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else ""
    elif program.suffix == ".py":  # python -m autotune.cli.serve: "cli serve" too
        name, command = program.parent.name, program.stem
    else:  # vllm serve
        name, command = program.name, sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else ""
    return _UNSAFE.sub("_", f"{name} {command}".strip())[:60] or "python"


def frame_name(code: CodeType) -> str:
    """`vllm/v1/engine/core.py:run_busy_loop`, `asyncio/runners.py:run`: the path below site-packages or the
    standard library (else the file name) and the function."""
    path = code.co_filename
    if _SITE.match(path):
        short = _SITE.sub("", path)
    elif path.startswith(_STDLIB):
        short = path[len(_STDLIB) :]
    else:
        short = os.path.basename(path)
    return f"{short}:{code.co_name}"


def stack_codes(frame: FrameType | None) -> tuple[CodeType, ...]:
    """The code objects of a thread's stack, innermost first (cheap: names are made once per code, at flush)."""
    codes: list[CodeType] = []
    while frame is not None and len(codes) < MAX_DEPTH:
        codes.append(frame.f_code)
        frame = frame.f_back
    return tuple(codes)


def folded_stack(thread_name: str, codes: tuple[CodeType, ...], names: dict[CodeType, str]) -> str:
    """`thread;outer;...;inner`, root first (the folded format of flame graphs)."""
    frames = [names[c] if c in names else names.setdefault(c, frame_name(c)) for c in reversed(codes)]
    return ";".join([_UNSAFE.sub("_", thread_name), *frames])


class StackProfiler:
    """Counts the folded stacks of this process's threads while the gate file exists; flushes them per window.

    Not an `autotune.observe.sampler.PeriodicSampler`: it must start afresh in a forked child (whose copy of the parent's
    thread object never runs), and it keeps counts per window instead of timestamped samples."""

    def __init__(self, directory: Path, hz: float) -> None:
        self.directory = directory
        self.interval_s = 1.0 / hz
        self.gate = directory / GATE_NAME
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._label: str | None = None
        self._counts: Counter[tuple[str, tuple[CodeType, ...]]] = Counter()
        self._names: dict[CodeType, str] = {}
        self._samples = 0
        self._last_flush = 0.0
        self._path: Path | None = None  # the window's file as last written

    def start(self) -> None:
        self._stop.clear()
        self._label, self._counts, self._samples, self._path = None, Counter(), 0, None  # a forked child: none of the parent's
        self._thread = threading.Thread(target=self._loop, name="autotune-stack-profile", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        self._flush(closed=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sample_once()
            except Exception:  # never take the server down; a gap shows as fewer samples
                log.debug("stack profile sample failed", exc_info=True)

    def _read_label(self) -> str | None:
        try:
            text = self.gate.read_text().strip()
        except OSError:
            return None
        return _UNSAFE.sub("_", text)[:80] or "window"

    def sample_once(self) -> None:
        label = self._read_label()
        if label != self._label:
            self._flush(closed=True)
            self._label, self._counts, self._samples, self._path = label, Counter(), 0, None
        if label is None:
            return
        me = threading.get_ident()
        names = {t.ident: t.name for t in threading.enumerate()}
        for ident, frame in sys._current_frames().items():
            if ident != me:
                self._counts[(names.get(ident, f"thread-{ident}"), stack_codes(frame))] += 1
        self._samples += 1
        if time.monotonic() - self._last_flush >= FLUSH_S:
            self._flush()

    def _flush(self, closed: bool = False) -> None:
        """Rewrite this window's file with every count so far (atomic: a reader never sees half a file);
        `closed`: the window is over, the file is final (the load generator waits for that)."""
        self._last_flush = time.monotonic()
        if self._label is None or not self._counts:
            return
        folder = self.directory / self._label
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{process_title()}.{os.getpid()}.folded"
        if self._path is not None and self._path != path:  # retitled within the window (vLLM names its processes as
            self._path.unlink(missing_ok=True)  # they start): the counts so far move to the file of the new title
        self._path = path
        tmp = path.with_suffix(".tmp")
        state = "closed" if closed else "open"
        lines = [f"# samples {self._samples} hz {1 / self.interval_s:g} pid {os.getpid()} {state}"]
        folded: Counter[str] = Counter()
        for (thread, codes), count in self._counts.items():
            folded[folded_stack(thread, codes, self._names)] += count
        lines += [f"{stack} {count}" for stack, count in folded.most_common()]
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(path)


def start_from_environment(environ: Mapping[str, str] = os.environ) -> StackProfiler | None:
    """Start the profiler (once per process, again in forked children) when DIR_ENV is set."""
    global _profiler
    directory = environ.get(DIR_ENV)
    if not directory:
        return None
    if _profiler is not None:
        return _profiler
    try:
        hz = float(environ.get(HZ_ENV, DEFAULT_HZ))
        if not 0 < hz <= 1000:
            raise ValueError("must be in (0, 1000]")
    except ValueError as exc:
        log.warning("%s=%r ignored: %s", HZ_ENV, environ.get(HZ_ENV), exc)
        return None
    _profiler = StackProfiler(Path(directory), hz)
    _profiler.start()
    os.register_at_fork(after_in_child=_restart_in_child)
    return _profiler


def _restart_in_child() -> None:
    """A forked child has the parent's counts but not its thread: start afresh under the child's pid."""
    if _profiler is not None:
        _profiler.start()
