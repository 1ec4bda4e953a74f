"""Fixtures of the browser tests: a headless Chromium driven by Playwright, a small simulated study, and
the folder screenshots go to.

Chromium is the system's (`scripts/ci-services.sh` installs Debian's package); Playwright's own browser
download cannot be reached from CI. Without Chromium these tests skip, except in CI (`CI` set), where they fail.
Screenshots go to a temporary folder, or to `AUTOTUNE_SCREENSHOTS_DIR` (`docs` regenerates the docs' images).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
QUICK_SPACE = REPO / "search_spaces" / "simulated-quick.yaml"
STUDY = "simulated-quick"
_BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str | None:
    configured = os.environ.get("AUTOTUNE_CHROMIUM")
    if configured:
        return configured
    return next((found for name in _BROWSERS if (found := shutil.which(name))), None)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    path = chromium_path()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is not installed: scripts/ci-services.sh installs it for CI")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        launched = playwright.chromium.launch(executable_path=path, headless=True, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("AUTOTUNE_SCREENSHOTS_DIR")
    folder = Path(configured) if configured else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def small_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 2-trial study of the shipped quick space on the simulated engine: its folder (optuna.db,
    mlflow.db, best.yaml)."""
    experiments = tmp_path_factory.mktemp("experiments")
    done = subprocess.run(
        [sys.executable, "-m", "autotune.cli", "tune", str(QUICK_SPACE), "--experiments-dir", str(experiments),
         "--n-trials", "2"],
        capture_output=True, text=True, timeout=240, check=False,
    )
    study_dir = experiments / STUDY
    assert done.returncode == 0 and (study_dir / "best.yaml").is_file(), done.stdout[-2000:] + done.stderr[-2000:]
    return study_dir
