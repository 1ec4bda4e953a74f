"""`autotune dashboard STUDY` on a small simulated study: optuna-dashboard answers on a loopback port with the
study's trials, and the MLflow UI command it prints serves the study's runs; both checked in headless Chromium."""

from __future__ import annotations

import os
import queue
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers.servers import MLFLOW_SERVER_ENV

from autotune.config import load_tuned_config

pytestmark = pytest.mark.slow

STEP_TIMEOUT_MS = 60_000
START_TIMEOUT_S = 90.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _process(argv: Sequence[str], cwd: Path) -> Iterator[queue.Queue[str]]:
    """A process in its own group, its output lines in a queue; the group is killed on exit."""
    process = subprocess.Popen(
        list(argv), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env={**os.environ, **MLFLOW_SERVER_ENV},
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    try:
        yield lines
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)


def _line_starting(lines: queue.Queue[str], prefix: str, seen: list[str]) -> str:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(line)
        if line.startswith(prefix):
            return line.removeprefix(prefix).strip()
    raise AssertionError(f"no line starting {prefix!r} within {START_TIMEOUT_S} s; output:\n" + "\n".join(seen))


def _wait_answers(url: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{url} did not answer within {START_TIMEOUT_S} s"
        time.sleep(0.2)


def test_dashboard_and_mlflow_ui_show_the_study(browser: Any, small_study: Path, screenshot_dir: Path) -> None:
    best_trial = load_tuned_config(small_study / "best.yaml").provenance.trial_number
    argv = [sys.executable, "-m", "autotune.cli", "dashboard", small_study.name,
            "--experiments-dir", str(small_study.parent), "--port", "0"]
    seen: list[str] = []
    with _process(argv, small_study.parent) as lines:
        url = _line_starting(lines, "optuna-dashboard:", seen)
        mlflow_command = _line_starting(lines, "MLflow UI (another terminal):", seen)
        assert url.startswith("http://127.0.0.1:") and url.endswith("/dashboard/studies/1"), url
        _wait_answers(url)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        try:
            page.set_default_timeout(STEP_TIMEOUT_MS)
            page.goto(url)
            page.get_by_text(f"{small_study.name} (id=1)").first.wait_for()
            page.get_by_text(f"Best Trial (number={best_trial})").first.wait_for()
            page.get_by_text("goodput_rps").first.wait_for()  # the study names its objective for the dashboard
            page.wait_for_timeout(1000)  # let the plots finish drawing for the screenshot
            page.screenshot(path=str(screenshot_dir / "dashboard.png"))
        finally:
            page.close()

    words = shlex.split(mlflow_command)
    assert words[:4] == ["mlflow", "ui", "--backend-store-uri", f"sqlite:///{small_study / 'mlflow.db'}"], words
    port = _free_port()
    words[words.index("--port") + 1] = str(port)
    mlflow = str(Path(sys.executable).parent / "mlflow")
    with _process([mlflow, *words[1:], "--workers", "1"], small_study.parent):
        _wait_answers(f"http://127.0.0.1:{port}/health")
        base = f"http://127.0.0.1:{port}"
        experiment = httpx.get(
            f"{base}/ajax-api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": "autotune"}, timeout=30
        ).json()["experiment"]["experiment_id"]
        page = browser.new_page(viewport={"width": 1400, "height": 800})
        try:
            page.set_default_timeout(STEP_TIMEOUT_MS)
            page.goto(f"{base}/#/experiments/{experiment}/runs")
            study_run = page.locator("[role=row]", has_text=f"study-{small_study.name}")
            study_run.first.wait_for()
            page.get_by_role("button", name="Close").click()  # MLflow's assistant panel, beside the runs
            study_run.locator("button[data-component-id*=runnamecellrenderer]").first.click()  # its trials
            for number in range(2):
                page.get_by_text(f"trial-{number}", exact=True).first.wait_for()  # one run per trial
            page.wait_for_timeout(1000)
            page.screenshot(path=str(screenshot_dir / "mlflow.png"))
        finally:
            page.close()


def test_dashboard_of_a_missing_study_is_one_clear_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "autotune.cli", "dashboard", "no-such-study", "--experiments-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "study 'no-such-study': no " in " ".join(done.stderr.split()) and "optuna.db" in done.stderr
