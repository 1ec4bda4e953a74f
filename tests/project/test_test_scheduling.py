"""The suite's own xdist scheduling (tests/helpers/scheduling.py): the timing-sensitive files share one work unit and
run first, then the long files."""

from __future__ import annotations

from helpers import scheduling


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
