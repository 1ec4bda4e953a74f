"""Each slo_rate window as it ends (autotune.bench.window_log), and a bracket re-aimed by the throughput of a window
that fell behind (autotune.bench.rate_search), against the fake server on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from autotune.bench.runner import run_benchmark_sync
from autotune.bench.schemas import SLO, LoadSpec, Summary
from autotune.bench.window_log import read_windows, windows_path
from autotune.bench.workload import resolve_workload

DEADLINE_S = 90.0


def _short_workload(tmp_path: Path) -> Path:
    workload = tmp_path / "short.yaml"
    workload.write_text("name: short\nkind: synthetic\nsynthetic: {input_tokens: 16, output_tokens: 4}\n")
    return workload


def test_windows_path_sits_beside_the_result() -> None:
    assert windows_path(Path("run/sustained.json")) == Path("run/sustained.windows.jsonl")
    assert windows_path(Path("run/sustained.json.gz")) == Path("run/sustained.windows.jsonl")


def test_a_bracket_far_above_the_server_is_re_aimed_at_the_throughput_it_fell_behind_with(
    tmp_path: Path, start_fake_server
) -> None:
    url = start_fake_server("--max-concurrent", "1", "--ttft-ms", "30", "--itl-ms", "2")  # ~25 req/s at most
    load = LoadSpec(
        mode="slo_rate", slo_rate_bracket=(90.0, 99.0), slo_rate_window_s=2.0, slo_rate_tolerance=0.5,
        slo_rate_max_backlog_growth_s=0.5, seed=3,
    )
    told: list[Summary] = []
    result = run_benchmark_sync(
        url, resolve_workload(str(_short_workload(tmp_path))), load, SLO(ttft_ms=2000), telemetry=False,
        on_window=lambda summary, simulated: told.append(summary),
    )
    first, second = told[0], told[1]
    assert first.offered_rate_rps == 99.0  # a narrow bracket: its high end first
    assert first.steady is not None and first.steady.verdict.startswith("falls behind") and first.steady.fell_behind
    assert first.throughput_rps < 40
    # not 90 (the low end) nor 90 - 2 x 9: the rate the server completed while falling behind
    assert second.offered_rate_rps == pytest.approx(min(first.throughput_rps, 99.0 / 1.5))
    # every window of the result, in order, told as it ended
    assert [(w.offered_rate_rps, w.steady) for w in told] == [(w.offered_rate_rps, w.steady) for w in result.sweep]
    assert len(told) <= 6 and result.summary.slo_rate_failed_rps is not None


def test_a_run_cut_short_keeps_the_windows_it_finished(tmp_path: Path, start_fake_server) -> None:
    url = start_fake_server("--ttft-ms", "5", "--itl-ms", "2")
    out = tmp_path / "sustained.json"
    log = windows_path(out)
    command = [
        sys.executable, "-m", "autotune.cli", "bench", "--url", url, "--workload", str(_short_workload(tmp_path)),
        "--slo-rate", "--slo", "ttft_ms=2000", "--window-s", "1", "--rate-range", "5:40", "--rate-tolerance", "0.05",
        "--output", str(out), "--quiet",
    ]
    bench = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"})
    try:
        deadline = time.monotonic() + DEADLINE_S
        while not (log.exists() and len(log.read_text().splitlines()) >= 2):
            assert bench.poll() is None, f"bench ended before two windows: {bench.communicate()}"
            assert time.monotonic() < deadline, "no two windows logged in time"
            time.sleep(0.05)
        bench.send_signal(signal.SIGKILL)  # what a lease's end does to it
        _, stderr = bench.communicate(timeout=30)
    finally:
        if bench.poll() is None:
            bench.kill()
    assert not out.exists()  # the result is written at the end only
    logged = read_windows(log)
    windows = [entry.window for entry in logged]
    assert len(windows) >= 2 and windows[0].offered_rate_rps == pytest.approx(22.5)  # the bracket's midpoint first
    assert all(w.steady is not None and w.completed > 0 for w in windows)
    assert "window 1: 22.50 req/s offered" in stderr and windows[0].steady.verdict in stderr
    assert not any(entry.simulated for entry in logged) and "SIMULATED" not in stderr
    cut_mid_write = log.read_text() + log.read_text().splitlines()[0][:200]  # a kill during the next append
    log.write_text(cut_mid_write)
    assert [entry.window for entry in read_windows(log)] == windows
    log.write_text("not json\n" + cut_mid_write)
    with pytest.raises(ValidationError):
        read_windows(log)


def test_a_simulated_engine_s_windows_say_so(tmp_path: Path, start_fake_server) -> None:
    url = start_fake_server("--ttft-ms", "5", "--itl-ms", "2", "--simulated")
    out = tmp_path / "run.json"
    done = subprocess.run(
        [sys.executable, "-m", "autotune.cli", "bench", "--url", url, "--workload", str(_short_workload(tmp_path)),
         "--rate", "20", "--num-requests", "20", "--output", str(out), "--quiet"],
        capture_output=True, text=True, timeout=DEADLINE_S,
    )
    assert done.returncode == 0, done.stderr
    (logged,) = read_windows(windows_path(out))
    assert logged.simulated and logged.window.completed == 20
    assert "SIMULATED engine (not a GPU measurement): window 1: 20.00 req/s offered" in done.stderr

