"""Soak: a steady open-loop rate through a real `autotune serve` (simulated engine), judged by autotune.bench.soak.

The CI run lasts 3 minutes (AUTOTUNE_SOAK_S overrides, to try); the longer run (AUTOTUNE_SOAK_LONG_S, default
30 minutes) is marked `soak`, which the default options deselect (`-m "not soak"` in pyproject's addopts):
run it with `.venv/bin/python -m pytest -m soak tests/reliability/test_reliability_soak.py`.

Criteria (autotune.bench.soak.SoakBounds, the defaults), comparing the last minute with the first:
no request fails; the server's RSS (process tree) rises at most 32 MiB from the first minute's max to the last
minute's max, and its fewest open descriptors at most 8 (the sockets of requests in flight come and go); p99 TTFT and p99 E2E latency of the last minute stay within
1.5 x the first minute's + 100 ms; the load generator keeps up. The record, the series (soak/*.json.gz) and the
plot (soak/*.png) land in AUTOTUNE_RELIABILITY_DIR.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
import yaml
from reliability.reliability_record import Outcome, current_test, record_dir, record_outcome
from reliability_sim import write_config

from autotune.bench.soak import SoakRecord, SoakSettings, run_soak
from autotune.bench.soak_plot import plot_soak
from helpers.servers import running_server_process

RATE_RPS = 8.0  # vlm-chat (one 448x448 image, 128 tokens out): about 7 requests in flight on the simulated H100
CI_DURATION_S = float(os.environ.get("AUTOTUNE_SOAK_S", "180"))
LONG_DURATION_S = float(os.environ.get("AUTOTUNE_SOAK_LONG_S", "1800"))


def _workload(folder: Path) -> Path:
    """vlm-chat with its images drawn from 32 distinct ones: rendering a distinct JPEG for each of thousands of
    requests would cost the 2-core CI box more time than the soak itself (the server still decodes every image)."""
    data = yaml.safe_load((resources.files("autotune") / "workloads" / "vlm-chat.yaml").read_text())
    data["name"] = "vlm-chat-pool32"
    data["synthetic"]["images"]["pool_size"] = 32
    path = folder / "vlm-chat-pool32.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _soak(tmp_path: Path, duration_s: float) -> SoakRecord:
    config = write_config(tmp_path / "tuned.yaml")
    settings = SoakSettings(rate_rps=RATE_RPS, duration_s=duration_s, workload=str(_workload(tmp_path)), window_s=min(60.0, duration_s / 3))
    with running_server_process(["--config", str(config)], log_path=tmp_path / "serve.log") as server:
        record = run_soak(server.base_url, settings, server_pid=server.pid)
    name = f"soak-{duration_s:g}s"
    series, plot = tmp_path / f"{name}.json.gz", tmp_path / f"{name}.png"
    series.write_bytes(gzip.compress(record.model_dump_json().encode(), compresslevel=9, mtime=0))
    plot_soak(record, plot)
    first, last = record.windows[0], record.windows[-1]
    folder = record_dir()
    if folder is not None:
        (folder / "soak").mkdir(exist_ok=True)
        for path in (series, plot):
            shutil.copy(path, folder / "soak" / path.name)
    bounds = settings.bounds
    record_outcome(
        Outcome(
            scenario=f"Soak: {RATE_RPS:g} req/s (constant, vlm-chat, 32 distinct images) for {duration_s:g} s through `autotune serve`",
            category="load",
            tried=record.sent,
            unit="requests",
            lost=record.failed + len(record.problems) - int(record.failed > bounds.max_errors),  # failures: counted once
            lost_meaning="a failed request, or a bound broken: RSS or open descriptors growing, p99 latency rising, "
            "the client falling behind",
            expected=f"last minute vs first: PSS +<= {bounds.memory_growth_mib:g} MiB, fewest open fds +<= {bounds.fd_growth}, "
            f"p99 TTFT and E2E <= {bounds.p99_ratio:g}x + {bounds.p99_slack_ms:g} ms; no error",
            test=current_test(),
            details={
                "rss_first_window_max_mib": first.rss_max_mib or 0.0,
                "rss_last_window_max_mib": last.rss_max_mib or 0.0,
                "pss_first_window_max_mib": first.pss_max_mib or 0.0,
                "pss_last_window_max_mib": last.pss_max_mib or 0.0,
                "fds_first_window_max": first.fds_max or 0,
                "fds_last_window_max": last.fds_max or 0,
                "fds_first_window_min": first.fds_min or 0,
                "fds_last_window_min": last.fds_min or 0,
                "ttft_p99_first_window_ms": first.ttft_p99_ms or 0.0,
                "ttft_p99_last_window_ms": last.ttft_p99_ms or 0.0,
                "e2el_p99_first_window_ms": first.e2el_p99_ms or 0.0,
                "e2el_p99_last_window_ms": last.e2el_p99_ms or 0.0,
                "plot": f"soak/{plot.name}",
            },
        )
    )
    return record


def _check(record: SoakRecord) -> None:
    assert record.simulated  # the simulated engine: a CPU stand-in, labeled so
    assert record.sent >= 0.95 * RATE_RPS * record.settings.duration_s, record.sent  # the rate was offered in full
    assert all(w.rss_max_mib is not None and w.pss_max_mib is not None and w.fds_max is not None for w in record.windows), record.windows
    assert not record.problems, record.problems


@pytest.mark.slow
@pytest.mark.timeout(CI_DURATION_S + 120)
def test_soak_three_minutes_through_autotune_serve(tmp_path: Path) -> None:
    record = _soak(tmp_path, CI_DURATION_S)
    assert len(record.windows) == 3
    _check(record)


@pytest.mark.soak
@pytest.mark.timeout(LONG_DURATION_S + 300)
def test_soak_long_through_autotune_serve(tmp_path: Path) -> None:
    _check(_soak(tmp_path, LONG_DURATION_S))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_soak_with_a_fixed_client_sends_from_that_many_processes(tmp_path: Path) -> None:
    # A soak on a device is bounded by the lease: its client processes are fixed so that a saturated window is
    # reported, not measured again from the start with more processes.
    config = write_config(tmp_path / "tuned.yaml")
    settings = SoakSettings(
        rate_rps=4.0, duration_s=6.0, workload=str(_workload(tmp_path)), window_s=3.0, warmup_requests=2, client_processes=2,
    )
    with running_server_process(["--config", str(config)], log_path=tmp_path / "serve.log") as server:
        record = run_soak(server.base_url, settings, server_pid=server.pid)
    assert record.client_processes == 2
    assert record.sent >= 0.95 * 4.0 * 6.0, record.sent


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_soak_command_settles_then_judges_and_states_what_sampling_cost(tmp_path: Path) -> None:
    # `autotune soak --config` starts the server itself; --settle-s leaves the first seconds out of the verdict
    config = write_config(tmp_path / "tuned.yaml")
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "autotune.cli", "soak", "--config", str(config), "--rate", "4", "--duration-s", "8",
         "--window-s", "3", "--settle-s", "2", "--warmup-requests", "2", "--processes", "1",
         "--workload", str(_workload(tmp_path)), "--out", str(out)],
        capture_output=True, text=True, timeout=100,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    record = SoakRecord.model_validate_json((out / "soak.json").read_text())
    assert [(w.start_s, w.end_s, w.settling) for w in record.windows] == [(0, 2, True), (2, 5, False), (5, 8, False)]
    assert "first judged window (after 2 s of settling)" in done.stdout
    assert "sampling the server took" in done.stdout and all(s.read_ms is not None for s in record.samples)
    progress = [line for line in done.stdout.splitlines() if line.startswith("soak: ")]  # once a window, as it runs
    assert len(progress) >= 3 and all("server RSS" in line and "open fds" in line for line in progress), done.stdout
    assert (out / "soak.png").stat().st_size > 0
