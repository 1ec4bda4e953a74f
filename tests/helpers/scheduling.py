"""How the suite's files are shared among its pytest-xdist workers on CI's two cores.

- The timing-sensitive files (the load generator's tests, the soak and the overload test: each judges whether its
  load generator kept up) form one work unit, so they run one after the other on one worker and never compete with
  each other for the CPU.
- The long files run first (`run_order`), so no worker is left with a long file at the end.

(Tried on 2026-12-06 and dropped: a third worker, with the other workers' processes at a lower priority while a
timing-sensitive test runs. The suite took 9 minutes instead of 12, but the lowered workers' own load generators fell
behind: a tuner test's trials were judged client-saturated, so its study found no feasible trial.)
"""

from __future__ import annotations

from collections.abc import Sequence

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
    """The timing-sensitive files first, then files with a `slow` test, then the rest; the order within each group
    is kept."""

    slow_files = {file_of(item.nodeid) for item in items if item.get_closest_marker("slow")}

    def rank(item: pytest.Item) -> int:
        path = file_of(item.nodeid)
        return 0 if is_timing_sensitive(path) else 1 if path in slow_files else 2

    return sorted(items, key=rank)
