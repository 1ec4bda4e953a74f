"""The slo_rate search (autotune.bench.rate_search) against an oracle with a known sustainable rate: no server."""

from __future__ import annotations

import pytest

from autotune.bench.rate_search import MAX_EXPANSIONS, RateSearch

FRACTIONS = [0.95, 0.85, 0.7, 0.55, 0.4, 0.25]


def _run(search: RateSearch, sustainable: float, limit: int = 60) -> list[float]:
    """Drive the search with windows that meet the SLO exactly up to `sustainable`; the rates tried, in order."""
    tried: list[float] = []
    while (rate := search.next_rate()) is not None:
        tried.append(rate)
        search.record(rate, rate <= sustainable)
        assert len(tried) <= limit, f"the search does not end: {tried}"
    return tried


@pytest.mark.parametrize("sustainable", [26.0, 51.0, 66.6, 79.0, 94.9])
def test_from_a_probe_the_search_bisects_until_the_bracket_is_within_5_percent(sustainable: float) -> None:
    search = RateSearch.from_probe(100.0, FRACTIONS, [1.05, 1.2, 1.4], tolerance=0.05)
    tried = _run(search, sustainable)
    passing, failing = search.rate_rps, search.failed_rps
    assert failing is not None and passing <= sustainable < failing  # both ends were tried
    assert failing <= 1.05 * passing and not search.censored
    assert passing in tried and failing in tried
    # highest fraction first, until the first that passes
    first_pass = next(i for i, rate in enumerate(tried) if rate <= sustainable)
    assert tried[: first_pass + 1] == pytest.approx([100 * f for f in FRACTIONS][: first_pass + 1])


def test_a_probe_that_was_low_is_passed_upwards_and_a_rate_above_all_is_a_lower_bound() -> None:
    search = RateSearch.from_probe(100.0, FRACTIONS, [1.05, 1.2, 1.4], tolerance=0.05)
    tried = _run(search, 130.0)
    assert tried[:3] == pytest.approx([95.0, 105.0, 120.0])  # 0.95 met: go above, lowest first
    assert 140.0 in tried and search.rate_rps <= 130.0 < search.failed_rps  # 1.4 missed: bisection below it
    assert search.failed_rps <= 1.05 * search.rate_rps
    beyond = RateSearch.from_probe(100.0, FRACTIONS, [1.05, 1.2], tolerance=0.05)
    _run(beyond, 500.0)
    assert beyond.rate_rps == pytest.approx(120.0) and beyond.censored and beyond.failed_rps is None


def test_no_rate_meeting_the_slo_gives_zero_after_the_fractions() -> None:
    search = RateSearch.from_probe(100.0, FRACTIONS, [], tolerance=0.05)
    tried = _run(search, 3.0)
    assert tried == pytest.approx([100 * f for f in FRACTIONS]) and search.rate_rps == 0.0
    assert search.failed_rps == pytest.approx(25.0) and not search.censored


def test_refine_steps_of_older_space_files_cap_the_bisection() -> None:
    search = RateSearch.from_probe(100.0, [1.3, 0.3], [], tolerance=0.05, max_bisections=1)
    assert _run(search, 70.0) == pytest.approx([130.0, 30.0, 80.0])  # one midpoint, then it stops above 5%
    assert search.rate_rps == pytest.approx(30.0) and search.failed_rps == pytest.approx(80.0)


def test_a_right_bracket_costs_no_window_at_its_ends() -> None:
    search = RateSearch.from_bracket(60.0, 120.0, tolerance=0.05)
    tried = _run(search, 85.0)
    assert tried[0] == pytest.approx(90.0)  # no probe: the midpoint first
    assert 60.0 not in tried and 120.0 not in tried
    assert search.rate_rps <= 85.0 < search.failed_rps <= 1.05 * search.rate_rps
    assert len(tried) == 4  # 90 x, 75 v, 82.5 v, 86.25 x: 4.5% apart


def test_a_bracket_whose_high_end_passes_grows_upwards() -> None:
    search = RateSearch.from_bracket(60.0, 120.0, tolerance=0.05)
    tried = _run(search, 200.0)
    assert 120.0 in tried and search.expansions_up == 1  # the high end met the SLO: the bracket became 120:240
    assert search.rate_rps <= 200.0 < search.failed_rps <= 1.05 * search.rate_rps


def test_a_bracket_whose_low_end_fails_grows_downwards() -> None:
    search = RateSearch.from_bracket(60.0, 120.0, tolerance=0.05)
    tried = _run(search, 20.0)
    assert 60.0 in tried and 30.0 in tried and search.expansions_down == 2
    assert search.rate_rps <= 20.0 < search.failed_rps <= 1.05 * search.rate_rps


def test_a_bracket_far_off_stops_after_its_expansions() -> None:
    up = RateSearch.from_bracket(1.0, 2.0, tolerance=0.05)
    _run(up, 1e6)
    assert up.censored and up.rate_rps == pytest.approx(2.0 * 2**MAX_EXPANSIONS)
    down = RateSearch.from_bracket(100.0, 200.0, tolerance=0.05)
    _run(down, 0.001)
    assert down.rate_rps == 0.0 and down.failed_rps == pytest.approx(100.0 / 2**MAX_EXPANSIONS)


def test_a_verdict_for_another_rate_is_refused_and_stop_ends_the_search() -> None:
    search = RateSearch.from_bracket(10.0, 20.0, tolerance=0.05)
    assert search.next_rate() == pytest.approx(15.0)
    with pytest.raises(ValueError, match="asked for"):
        search.record(14.0, True)
    search.stop()
    assert search.next_rate() is None and search.rate_rps == 0.0
    with pytest.raises(ValueError, match="low < high"):
        RateSearch.from_bracket(20.0, 10.0, tolerance=0.05)


def test_a_narrow_bracket_steps_past_its_end_by_its_own_width_not_to_twice_the_rate() -> None:
    """A 120 s re-measurement from a known rate: one pass above the bracket must not send twice the rate."""
    search = RateSearch.from_bracket(33.0, 34.634, tolerance=0.05)
    tried = _run(search, 35.2)
    assert max(tried) < 1.2 * 34.634  # the next failing end was 34.634 + 2 x 1.634 = 37.9
    assert search.rate_rps <= 35.2 < search.failed_rps <= 1.05 * search.rate_rps
    down = RateSearch.from_bracket(33.0, 34.634, tolerance=0.05)
    tried = _run(down, 31.0)
    assert min(tried) > 0.85 * 33.0 and down.rate_rps <= 31.0 < down.failed_rps


def _run_with_throughput(search: RateSearch, capacity: float, lag: float = 0.95) -> list[float]:
    """Windows above `capacity` fall behind while completing `lag` x capacity per second (a window's steady part
    counts the completions of requests sent a latency earlier); those at or below it meet the SLO."""
    tried: list[float] = []
    while (rate := search.next_rate()) is not None:
        tried.append(rate)
        met = rate <= capacity
        search.record(rate, met, behind_throughput_rps=None if met else lag * capacity)
        assert len(tried) <= 60, f"the search does not end: {tried}"
    return tried


def test_a_bracket_from_another_host_is_re_aimed_at_the_throughput_of_the_window_that_fell_behind() -> None:
    """The defaults' 45.92:48.08 from one H100 on an H100 that sustains ~30: not six 120 s windows stepping down."""
    search = RateSearch.from_bracket(45.92, 48.08, tolerance=0.05)
    tried = _run_with_throughput(search, 30.0)
    # the miss, its throughput (5% under the capacity), then 5% steps up until one misses
    assert tried == pytest.approx([48.08, 28.5, 28.5 * 1.05, 28.5 * 1.05**2])
    assert search.rate_rps == pytest.approx(29.925) and search.failed_rps == pytest.approx(31.42125)
    assert search.expansions_down == 1 and not search.censored
    plain = RateSearch.from_bracket(45.92, 48.08, tolerance=0.05)
    assert len(_run(plain, 30.0)) > len(tried) + 2  # without the throughput: stepping down by the width


def test_a_right_bracket_is_not_re_aimed_and_a_latency_miss_carries_no_estimate() -> None:
    right = RateSearch.from_bracket(71.0, 74.5, tolerance=0.05)
    assert _run_with_throughput(right, 72.0, lag=0.99) == pytest.approx([74.5, 71.0])  # 71.28 >= 71: the low end
    probe = RateSearch.from_probe(100.0, FRACTIONS, [1.05], tolerance=0.05)  # a probe measured capacity already
    assert _run_with_throughput(probe, 30.0)[:5] == pytest.approx([95.0, 85.0, 70.0, 55.0, 40.0])
    estimate_missed = RateSearch.from_bracket(45.92, 48.08, tolerance=0.05)
    assert estimate_missed.next_rate() == pytest.approx(48.08)
    estimate_missed.record(48.08, False, behind_throughput_rps=30.0)
    assert estimate_missed.next_rate() == pytest.approx(30.0)
    estimate_missed.record(30.0, False)  # missed on a p99, not behind: step down from it by the bracket's width
    tried = _run(estimate_missed, 25.0)
    assert estimate_missed.rate_rps <= 25.0 < estimate_missed.failed_rps <= 1.05 * estimate_missed.rate_rps
    assert min(tried) >= 30.0 - 2 * 2.16 * 2  # no halving of the rate
