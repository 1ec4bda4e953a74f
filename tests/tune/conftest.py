"""Fixtures of the tuning tests (helpers live in tests/helpers/tune.py)."""

from __future__ import annotations

from typing import Any

import pytest
from helpers.tune import quick_space_mapping


@pytest.fixture
def quick_space_data() -> dict[str, Any]:
    return quick_space_mapping()
