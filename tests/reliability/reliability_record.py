"""What a reliability or security test tried and what was lost, for the table in docs/reliability.md.

Each test builds an `Outcome` from its own observations (the same numbers it asserts on) and calls
`record_outcome`. Nothing is written unless AUTOTUNE_RELIABILITY_DIR names a folder; then one JSON
file per scenario lands there and `autotune summarize reliability` renders the table from them:

    AUTOTUNE_RELIABILITY_DIR=experiments/reliability .venv/bin/python -m pytest tests/reliability tests/security
    .venv/bin/autotune summarize reliability experiments/reliability docs/reliability.md

Imported as `reliability.reliability_record` (tests/ is on sys.path).
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

RECORD_DIR_ENV = "AUTOTUNE_RELIABILITY_DIR"

Category = Literal["fault", "bad input", "load", "security"]


class Outcome(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scenario: str = Field(description="What was done, in words")
    category: Category
    tried: int = Field(ge=0, description="How many times it was done")
    unit: str = Field(description="What `tried` counts: trials, requests, files, kills, ...")
    lost: int = Field(ge=0, description="Finished trials, requests or data lost (the goal: 0)")
    lost_meaning: str = Field(description="What would count as lost")
    expected: str = Field(description="What the test checks happened instead")
    test: str = Field(description="The pytest node that measured it")
    details: dict[str, float | int | str] = Field(default_factory=dict)
    recorded_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


def record_dir() -> Path | None:
    """The record folder (AUTOTUNE_RELIABILITY_DIR), created; None when unset. Files other than the outcomes
    (plots, series) go into sub-folders: the table reads every `*.json` at its top level."""
    folder = os.environ.get(RECORD_DIR_ENV)
    if not folder:
        return None
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    return target


def record_outcome(outcome: Outcome) -> Path | None:
    """Write the outcome when AUTOTUNE_RELIABILITY_DIR is set; returns the file written (or None)."""
    target = record_dir()
    if target is None:
        return None
    slug = re.sub(r"[^A-Za-z0-9]+", "-", outcome.scenario).strip("-").lower()[:80]
    path = target / f"{slug}.json"
    path.write_text(outcome.model_dump_json(indent=2) + "\n")
    return path


def current_test() -> str:
    """The running test's node id (pytest sets PYTEST_CURRENT_TEST)."""
    return os.environ.get("PYTEST_CURRENT_TEST", "unknown").rsplit(" (", 1)[0]
