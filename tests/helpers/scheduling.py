"""How the suite shares CI's two cores among its pytest-xdist workers.

Most tests wait (on servers, restarts, load windows), so the suite runs more workers than cores. Three things keep
that from starving the tests that measure time:

- the timing-sensitive files (the load generator's tests, the soak and the overload test: each judges whether its
  load generator kept up) form one work unit, so they run one after the other on one worker and never compete with
  each other;
- while one of their tests runs, the other workers' process trees run at a lower CPU priority (`others_yield`), so the
  load generator is scheduled when it wakes, and the others use the CPU it leaves;
- the long files run first (`run_order`), so no worker is left with a long file at the end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import psutil
import pytest
from xdist.scheduler import LoadScopeScheduling

TIMING_SENSITIVE_FOLDERS = ("tests/bench/",)
TIMING_SENSITIVE_FILES = frozenset(
    {
        "tests/reliability/test_reliability_soak.py",
        "tests/reliability/test_reliability_overload.py",
    }
)
TIMING_SENSITIVE_UNIT = "timing-sensitive files"
LOWER_PRIORITY_NICENESS = 10  # CFS weight 110 against 1024 at niceness 0: about 9% of a contended core


def file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def is_timing_sensitive(path: str) -> bool:
    return path in TIMING_SENSITIVE_FILES or path.startswith(TIMING_SENSITIVE_FOLDERS)


class FileScheduling(LoadScopeScheduling):
    """`--dist loadfile` (a file stays on one worker, with its module fixtures), except that the timing-sensitive
    files are one unit, and units run in collection order (`run_order` has sorted it) instead of by test count."""

    def __init__(self, config: pytest.Config, log: object = None) -> None:
        super().__init__(config, log)
        config.option.loadscopereorder = False

    def _split_scope(self, nodeid: str) -> str:
        path = file_of(nodeid)
        return TIMING_SENSITIVE_UNIT if is_timing_sensitive(path) else path


def run_order(items: Sequence[pytest.Item]) -> list[pytest.Item]:
    """The timing-sensitive files first (their worker lowers the others while they run), then files with a
    `slow` test, then the rest; the order within each group is kept."""

    slow_files = {file_of(item.nodeid) for item in items if item.get_closest_marker("slow")}

    def rank(item: pytest.Item) -> int:
        path = file_of(item.nodeid)
        return 0 if is_timing_sensitive(path) else 1 if path in slow_files else 2

    return sorted(items, key=rank)


def _sibling_workers() -> list[psutil.Process]:
    """The other xdist workers: the other children of the controller that started this worker."""
    me = psutil.Process()
    parent = me.parent()
    if parent is None:
        return []
    return [child for child in parent.children() if child.pid != me.pid]


def _trees(roots: list[psutil.Process]) -> list[psutil.Process]:
    processes: list[psutil.Process] = []
    for root in roots:
        try:
            processes += [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
    return processes


def _set_niceness(processes: list[psutil.Process], niceness: int) -> None:
    for process in processes:
        try:
            process.nice(niceness)
        except (psutil.NoSuchProcess, psutil.AccessDenied, PermissionError):
            continue  # gone, or a priority only root may raise again: it stays lower


@contextmanager
def lowered_priority(roots: list[psutil.Process], niceness: int = LOWER_PRIORITY_NICENESS) -> Iterator[None]:
    """Run `roots` and their descendants, including those started meanwhile (they inherit it), at `niceness`;
    afterwards every process of the trees gets this process's niceness back where the OS allows (raising a
    priority needs root)."""
    _set_niceness(_trees(roots), niceness)
    try:
        yield
    finally:
        _set_niceness(_trees(roots), os.getpriority(os.PRIO_PROCESS, 0))


@contextmanager
def others_yield() -> Iterator[None]:
    """The other xdist workers and everything they run, at a lower priority for the duration (nothing outside xdist)."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        yield
        return
    with lowered_priority(_sibling_workers()):
        yield
