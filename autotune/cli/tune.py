"""`autotune tune` (placeholder, filled in by its issue)."""

from __future__ import annotations

from autotune.cli import app  # noqa: F401
