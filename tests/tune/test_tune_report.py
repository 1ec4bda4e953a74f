"""The live trials table: columns, rows of finished and running trials, the ETA line."""

from __future__ import annotations

import datetime as dt

import optuna
from helpers.tune import quick_space_mapping, space_from
from optuna.distributions import IntDistribution
from optuna.trial import TrialState, create_trial
from rich.console import Console

from autotune.tune import attrs
from autotune.tune.report import LiveTrialsTable, eta_s


def _trial(number: int, seconds: float, throughput: float, state: TrialState = TrialState.COMPLETE) -> optuna.trial.FrozenTrial:
    start = dt.datetime(2026, 1, 1, 12, 0, 0)
    trial = create_trial(
        state=state,
        value=throughput if state is TrialState.COMPLETE else None,
        params={"max_num_seqs": 8 * (number + 1)},
        distributions={"max_num_seqs": IntDistribution(1, 64)},
        user_attrs={attrs.METRICS: {"throughput_rps": throughput, "goodput_rps": throughput / 2, "ttft_ms_p99": 812.4}},
    )
    trial.number = number
    trial.datetime_start, trial.datetime_complete = start, start + dt.timedelta(seconds=seconds)
    return trial


def test_live_table_shows_trials_running_trial_and_eta() -> None:
    space = space_from(quick_space_mapping())
    console = Console(record=True, width=220, force_terminal=False)
    table = LiveTrialsTable(space, console, planned=5, title="quick: trials")
    with table:  # not a terminal: plain lines, no Live
        table(None, _trial(0, 60, 3.25))  # type: ignore[arg-type]
        table(None, _trial(1, 120, 4.5))  # type: ignore[arg-type]
    table.trial_started(2, {"max_num_seqs": 32})
    table.phase(2, "measuring")
    lines = console.export_text()
    assert "trial 0 COMPLETE" in lines and "throughput_rps=3.25" in lines  # the CI-log fallback
    assert "trial 2 started: {'max_num_seqs': 32}" in lines and "trial 2: measuring (+0 s)" in lines  # each step
    console.print(table.render())
    text = console.export_text()
    header = next(line for line in text.splitlines() if "thr rps" in line)
    assert [h for h in ("#", "state", "max_num_seqs", "thr rps", "good rps", "TTFT p99 ms", "duration") if h in header]
    positions = [header.index(h) for h in ("state", "max_num_seqs", "thr rps", "good rps", "TTFT p99 ms", "duration")]
    assert positions == sorted(positions)
    assert "4.50" in text and "2.25" in text and "812" in text and "2m00s" in text and "measuring..." in text
    # ETA: median of 60 s and 120 s = 90 s, times 3 trials left
    assert eta_s([60.0, 120.0], 3) == 270.0 and "ETA 4m30s" in text and "2 done of 5" in text


def test_eta_is_bounded_by_the_timeout() -> None:
    """100 trials planned (--n-trials 100) but --timeout 300: no trial starts after 300 s, the last one finishes."""
    assert eta_s([200.0], 100, time_left_s=300.0) == 500.0
    assert eta_s([200.0], 1, time_left_s=300.0) == 200.0  # the count ends first
    assert eta_s([200.0], 100, time_left_s=-5.0) == 200.0  # past the timeout: the trial in flight
