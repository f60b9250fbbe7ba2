"""A home with a landed month of two versions, and the view over it in-process (Starlette's TestClient)."""

from __future__ import annotations

import re
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
ORIGIN = "http://localhost:3000"


def csrf_of(page: str) -> str:
    """The CSRF token of a page's forms."""
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


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


@pytest.fixture
def view(landed, monkeypatch):
    """A browser on the view at ORIGIN; runs the view submits to Dagster are recorded in view.submitted."""
    submitted: list[tuple[str, dict, dict | None]] = []
    monkeypatch.setattr(Sources, "submit_run",
                        lambda self, job, tags, run_config=None: submitted.append((job, tags, run_config)) or "run-1")
    with TestClient(create_app(Sources.open(Settings.from_env(), DAGSTER_URL)), base_url=ORIGIN) as client:
        client.csrf = csrf_of(client.get("/").text)  # type: ignore[attr-defined]
        client.submitted = submitted  # type: ignore[attr-defined]
        client.store = client.app.state.sources.store  # type: ignore[attr-defined]
        yield client
