"""A home with a landed month of two versions, and the view over it in-process (Starlette's TestClient)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from starlette.testclient import TestClient

from batch.inputs import InputTables, load_landing
from batch_view.app import create_app
from batch_view.sources import Sources
from resources.settings import Settings
from tests.cli.test_cli_views import MONTH, cli, write_version

DAGSTER_URL = "http://localhost:3001"


@dataclass
class Landed:
    home: Path
    month: str
    tables: InputTables
    versions: dict[int, pd.DataFrame]


@pytest.fixture
def landed(home) -> Landed:
    """A demo month landed, with version 1 and version 2 (10 requests moved, a note)."""
    cli("demo-data", MONTH, "--requests", "300", "--resources", "30", "--seed", "5")
    tables = load_landing(home, MONTH)
    return Landed(home, MONTH, tables, {1: write_version(home, MONTH, 1, tables),
                                        2: write_version(home, MONTH, 2, tables, moved=10, note="pinned the big ones")})


@pytest.fixture
def client(home) -> Iterator[TestClient]:
    """The view over the test's home, the Dagster UI said to be at DAGSTER_URL."""
    with TestClient(create_app(Sources.open(Settings.from_env(), DAGSTER_URL))) as test_client:
        yield test_client
