"""Fixtures of the storage tests."""

from __future__ import annotations

import pytest

from resources.storage import ExportStore


@pytest.fixture
def store(tmp_path) -> ExportStore:
    """An empty export store in a temporary home."""
    return ExportStore(tmp_path / "home")
