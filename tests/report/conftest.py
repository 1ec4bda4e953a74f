"""The report tests import the tuning helpers (tests/tune/tune_helpers.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tune"))
