"""What stops a whole study (not one trial): its storage gone past the retry window, its folder out of space.

Such a stop is not a trial's failure: the worker ends with one message (exit 2) and leaves the study as it is.
Finished trials stay in the storage; the trial it was running stays RUNNING and the next plain resume fails it
as "worker died" (not counted against the budget), so the same command run again finishes the budget.

Optuna's trial loop may replace the error on its way out (its own `tell` fails against the same storage), so
the tuner looks for the stop anywhere in the exception chain (`stop_in_chain`, `stops_as_one_error`).
SIGTERM stops a study as Ctrl-C does (`sigterm_as_interrupt`).
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from autotune.errors import AutotuneError

OUT_OF_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
"""No space left, quota exceeded, file size limit (RLIMIT_FSIZE) reached: a write that cannot land."""
SQLITE_FULL_MESSAGE = "database or disk is full"  # SQLITE_FULL, as Python's sqlite3 words it
RESUME_HINT = "finished trials are kept in the storage; run the same command again to resume"


class StudyStopped(AutotuneError):
    """The study cannot go on in this worker (the storage or the folder failed); nothing finished is lost."""


class StorageUnavailableError(StudyStopped):
    """The Optuna storage stayed unreachable past the retry window, or failed in a way that waiting cannot fix."""


class OutOfSpaceError(StudyStopped):
    """A write under the experiments folder failed for lack of space (or a file size limit)."""


def out_of_space(exc: BaseException) -> bool:
    """An OSError with a no-space errno, or SQLite's SQLITE_FULL, as `exc` or behind it (its causes, contexts)."""
    return any(
        (isinstance(e, OSError) and e.errno in OUT_OF_SPACE_ERRNOS)
        or (type(e).__name__ == "OperationalError" and SQLITE_FULL_MESSAGE in str(e))
        for e in _chain(exc)
    )


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc`, then its causes and contexts, each once."""
    seen: list[BaseException] = []
    pending = [exc]
    while pending:
        current = pending.pop(0)
        if any(current is e for e in seen):
            continue
        seen.append(current)
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]
    return seen


def out_of_space_error(folder: Path, exc: BaseException, *, writing: str | None = None) -> OutOfSpaceError:
    """One line naming the folder, what failed and what to do."""
    cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
    where = f" writing {writing}" if writing else ""
    return OutOfSpaceError(
        f"experiments folder {folder} is out of space ({cause}{where}; {free_text(folder)}): the study stops; "
        f"{RESUME_HINT} once there is space"
    )


def free_gib(folder: Path) -> float | None:
    try:
        return shutil.disk_usage(folder).free / 1024**3
    except OSError:
        return None


def free_text(folder: Path) -> str:
    free = free_gib(folder)
    return "free space unknown" if free is None else f"{free * 1024:.1f} MiB free"


def check_free_space(folder: Path, min_free_gib: float) -> None:
    """Before a trial: stop the study while it is still whole when the folder's disk has filled up meanwhile."""
    free = free_gib(folder)
    if free is not None and free < min_free_gib:
        raise OutOfSpaceError(
            f"experiments folder {folder} is out of space ({free * 1024:.1f} MiB free, a trial needs at least "
            f"{min_free_gib:g} GiB; AUTOTUNE_MIN_FREE_GIB sets it): the study stops before the next trial; "
            f"{RESUME_HINT} once there is space"
        )


def stop_in_chain(exc: BaseException, folder: Path) -> StudyStopped | None:
    """The study stop behind `exc` (itself, a cause or a context), an out-of-space OSError made one; else None."""
    chain = _chain(exc)
    for current in chain:
        if isinstance(current, StudyStopped):
            return current
    for current in chain:
        if isinstance(current, OSError) and out_of_space(current):
            return out_of_space_error(folder, current, writing=current.filename or None)
    return None


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the study like Ctrl-C: the running trial's server is stopped and the trial marked."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def stops_as_one_error(study_dir: Path, known: Callable[[], StudyStopped | None] = lambda: None) -> Iterator[None]:
    """An error while the study was stopping (storage gone, folder out of space) becomes that stop alone.

    Optuna's trial loop replaces the objective's error when its own `tell` then fails against the same storage
    (an AssertionError, an UnboundLocalError): the stop is the one the objective met (`known`), else one found
    in the error's chain.
    """
    try:
        yield
    except StudyStopped:
        raise
    except Exception as exc:
        stop = known() or stop_in_chain(exc, study_dir)
        if stop is None:
            raise
        raise stop from None
