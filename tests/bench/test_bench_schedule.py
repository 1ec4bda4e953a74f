"""Arrival schedules and the split of load across client processes (pure functions)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autotune.bench.schedule import (
    STREAMS_PER_PROCESS,
    arrival_offsets_s,
    choose_client_processes,
    deal_round_robin,
    split_evenly,
)


def test_poisson_arrivals_have_the_rate_and_exponential_gaps() -> None:
    rate, n = 40.0, 4000
    offsets = arrival_offsets_s(rate, "poisson", seed=7, num_requests=n)
    assert len(offsets) == n and offsets[0] == 0.0
    gaps = np.diff(offsets)
    assert np.all(gaps > 0)
    # mean gap 1/rate within 4 standard errors (the exponential's std equals its mean)
    assert abs(gaps.mean() - 1 / rate) < 4 * (1 / rate) / math.sqrt(len(gaps))
    try:
        from scipy import stats
    except ImportError:
        cv = gaps.std() / gaps.mean()
        assert 0.9 < cv < 1.1  # exponential: coefficient of variation 1
    else:
        assert stats.kstest(gaps, "expon", args=(0, 1 / rate)).pvalue > 0.001
        # and not constant spacing: a constant schedule must fail the same test
        constant = np.diff(arrival_offsets_s(rate, "constant", seed=7, num_requests=200))
        assert stats.kstest(constant, "expon", args=(0, 1 / rate)).pvalue < 1e-6


def test_poisson_is_seeded() -> None:
    a = arrival_offsets_s(10, "poisson", seed=1, num_requests=50)
    assert a == arrival_offsets_s(10, "poisson", seed=1, num_requests=50)
    assert a != arrival_offsets_s(10, "poisson", seed=2, num_requests=50)


def test_constant_arrivals_are_exact() -> None:
    assert arrival_offsets_s(4.0, "constant", seed=0, num_requests=5) == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_duration_bounds_the_schedule() -> None:
    offsets = arrival_offsets_s(100.0, "poisson", seed=3, duration_s=2.0)
    assert offsets and max(offsets) < 2.0 and 140 < len(offsets) < 260
    assert len(arrival_offsets_s(100.0, "constant", seed=0, duration_s=2.0, num_requests=10)) == 10
    with pytest.raises(ValueError):
        arrival_offsets_s(1.0, "poisson", seed=0)


def test_splits() -> None:
    assert split_evenly(10, 3) == [4, 3, 3] and sum(split_evenly(7, 7)) == 7
    parts = deal_round_robin(list(range(7)), 3)
    assert parts == [[0, 3, 6], [1, 4], [2, 5]]


def test_client_process_choice_scales_with_load_and_is_capped_by_cpus() -> None:
    assert choose_client_processes(concurrency=1, client_cpus=[0, 1, 2, 3]) == 1
    assert choose_client_processes(concurrency=3 * STREAMS_PER_PROCESS, client_cpus=[0, 1, 2, 3]) == 3
    assert choose_client_processes(rate_rps=100, cpu_s_per_request=0.0125, client_cpus=list(range(8))) == 3  # 1.25 cores
    assert choose_client_processes(concurrency=100 * STREAMS_PER_PROCESS, client_cpus=[0, 1]) == 2
