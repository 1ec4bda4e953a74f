"""The suite's own xdist scheduling (tests/helpers/scheduling.py): the timing-sensitive files share one work unit and
run first, and the other workers' process trees run at a lower priority while one of their tests runs."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest
from helpers import scheduling


def _niceness_of_all(root: psutil.Process) -> list[int]:
    return [process.nice() for process in [root, *root.children(recursive=True)]]


def _wait_for_children(root: psutil.Process, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(root.children(recursive=True)) < count:
        assert time.monotonic() < deadline, "the child process never started its own child"
        time.sleep(0.02)


def test_a_tree_runs_lower_meanwhile_including_processes_it_starts_then_gets_its_priority_back() -> None:
    # a worker stand-in that starts a process of its own once told to (after the priority was lowered)
    script = (
        "import subprocess, sys, time\n"
        "sys.stdin.readline()\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
        "time.sleep(30)\n"
    )
    worker = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, text=True)
    try:
        root = psutil.Process(worker.pid)
        mine = psutil.Process().nice()
        with scheduling.lowered_priority([root], niceness=mine + 7):
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
            _wait_for_children(root, 1)
            assert _niceness_of_all(root) == [mine + 7, mine + 7]
        assert _niceness_of_all(root) == [mine, mine]
    finally:
        for process in psutil.Process(worker.pid).children(recursive=True):
            process.kill()
        worker.kill()
        worker.wait()


def test_outside_xdist_nothing_is_lowered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.setattr(scheduling, "_sibling_workers", lambda: pytest.fail("looked for other workers"))
    with scheduling.others_yield():
        pass


def test_the_timing_sensitive_files_are_one_unit_and_every_other_file_its_own() -> None:
    split = scheduling.FileScheduling._split_scope
    timing = [*scheduling.TIMING_SENSITIVE_FILES, "tests/bench/test_bench_cli.py"]
    units = {split(None, f"{path}::test_x[a::b]") for path in timing}  # type: ignore[arg-type]
    assert units == {scheduling.TIMING_SENSITIVE_UNIT}
    assert split(None, "tests/tune/test_tune_e2e.py::test_y[a::b]") == "tests/tune/test_tune_e2e.py"  # type: ignore[arg-type]


class _Item:
    def __init__(self, nodeid: str, slow: bool = False) -> None:
        self.nodeid, self.slow = nodeid, slow

    def get_closest_marker(self, name: str) -> object | None:
        return object() if name == "slow" and self.slow else None


def test_the_run_order_is_timing_sensitive_files_then_files_with_a_slow_test_then_the_rest() -> None:
    soak = sorted(scheduling.TIMING_SENSITIVE_FILES)[0]
    items = [
        _Item("tests/a/test_quick.py::test_1"),
        _Item("tests/b/test_mixed.py::test_quick"),
        _Item("tests/b/test_mixed.py::test_slow", slow=True),
        _Item(f"{soak}::test_soak"),
        _Item("tests/c/test_quick.py::test_2"),
    ]
    ordered = [item.nodeid for item in scheduling.run_order(items)]  # type: ignore[arg-type]
    assert ordered == [
        f"{soak}::test_soak",
        "tests/b/test_mixed.py::test_quick",
        "tests/b/test_mixed.py::test_slow",
        "tests/a/test_quick.py::test_1",
        "tests/c/test_quick.py::test_2",
    ]
