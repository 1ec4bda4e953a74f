"""experiments/: every file a README or a summary.json cites is recorded (in whichever form it is stored, read through
autotune.report.recorded), and the folder stays within its size budget (experiments/README.md)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autotune.report import recorded

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = REPO / "experiments"
BUDGET_BYTES = 16_000_000

_LINK = re.compile(r"\]\(([^)\s]+)\)")  # [text](target)
_CODE = re.compile(r"`([^`\s]+)`")  # `token`
_PATH = re.compile(r"[\w.\-]+(?:/[\w.\-]*)+")  # a relative path: words joined by "/"
_PLACEHOLDER = re.compile(r"(?:^|/)(?:N|n|YYYY-MM-DD|STUDY)(?:/|$)")
_FILE_NAME = re.compile(r"\.[A-Za-z]{1,5}$")  # ends like a file name: .md, .json, .log, .gz ...
RESULT_SUFFIXES = (".json", ".json.gz")  # a summary names a bench result without them ("measurements/slo-rate-x")


def resolves(path: str, folder: Path) -> bool:
    """The cited `path` is recorded relative to the citing file's folder, one of its parents, or the repository."""
    bases = [folder, *folder.parents[: len(folder.relative_to(REPO).parts)]]
    for base in bases:
        target = base / path
        if recorded.exists(target) or any(recorded.exists(target.with_name(target.name + s)) for s in RESULT_SUFFIXES):
            return True
    return False


def readme_citations(readme: Path) -> Iterator[str]:
    """Its links to local files, and the paths it quotes as code that name a file (`measurements/env.json`)."""
    text = readme.read_text()
    for target in _LINK.findall(text):
        if not re.match(r"[a-z]+:", target) and not target.startswith("#"):
            yield target.split("#")[0]
    for token in _CODE.findall(text):
        if _PATH.fullmatch(token) and _FILE_NAME.search(token) and not _PLACEHOLDER.search(token):
            yield token


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def summary_citations(summary: Path) -> Iterator[str]:
    """Every word of its strings that is a relative path (`2026-11-26c/calibration/refit-this-run.json`, `measurements/`)."""
    for text in _strings(json.loads(summary.read_text())):
        for word in text.split():
            if _PATH.fullmatch(word) and not word.startswith("/"):
                yield word


def _cases(pattern: str) -> list[Path]:
    return sorted(EXPERIMENTS.rglob(pattern))


@pytest.mark.parametrize("readme", _cases("README.md"), ids=lambda p: str(p.relative_to(EXPERIMENTS)))
def test_every_file_a_readme_cites_is_recorded(readme: Path) -> None:
    missing = [path for path in readme_citations(readme) if not resolves(path, readme.parent)]
    assert not missing, f"{readme.relative_to(REPO)} cites files that are not there: {missing}"


@pytest.mark.parametrize("summary", _cases("summary*.json"), ids=lambda p: str(p.relative_to(EXPERIMENTS)))
def test_every_path_a_summary_names_is_recorded(summary: Path) -> None:
    missing = [path for path in summary_citations(summary) if not resolves(path, summary.parent)]
    assert not missing, f"{summary.relative_to(REPO)} names files that are not there: {missing}"


def test_a_citation_of_a_file_stored_compressed_or_archived_resolves() -> None:
    """The checks above would pass on a tree with nothing in it: here a missing file fails and stored forms pass."""
    run = REPO / "experiments" / "h100-qwen3-vl-4b" / "2026-11-26c"
    assert resolves("study/qwen3-vl-4b-reference-v2/trials/3/server.log", run)  # stored as server.log.gz
    assert resolves("study/qwen3-vl-4b-reference-v2/optuna.db", run)  # stored as optuna.db.xz
    assert resolves("study/qwen3-vl-4b-reference-v2/trials/20/stack-profile", run)  # stored as stack-profile.tar.xz
    assert resolves("autotune/report/runs/study_run.py", run)  # relative to the repository
    assert not resolves("study/qwen3-vl-4b-reference-v2/trials/3/no-such.log", run)
    assert not resolves("study/qwen3-vl-4b-reference-v2/mlflow.db", run)  # not kept


def test_experiments_stay_within_the_size_budget() -> None:
    """What git tracks under experiments/ (untracked local study output does not count)."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run(["git", "ls-files", "-z", "experiments"], cwd=REPO, capture_output=True, check=True).stdout
    files = [REPO / name for name in listed.decode().split("\0") if name]
    size = sum(p.stat().st_size for p in files if p.is_file())
    assert size <= BUDGET_BYTES, f"experiments/ tracks {size / 1e6:.1f} MB in {len(files)} files (budget 16 MB)"
