"""The Dagster UI in headless chromium: the monthly asset graph, its checks and its partitions."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from checks import names
from tests.e2e.conftest import dagster_services

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

MONTHLY_ASSETS = ("landed_inputs", "validated_inputs", "capacity_plan", "allocation_proposal",
                  "allocation_export", "final_allocation")
PROPOSAL_CHECKS = (names.NO_RESOURCE_OVER_CAPACITY, names.NO_INELIGIBLE_PAIR, names.MUST_ALLOCATE_REQUESTS_SERVED)
CHROMIUM_TIMEOUT_S = 60
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def webserver(chromium, isolated_env, tmp_path_factory):
    """The webserver alone on the embedded default (SQLite): the pages need no daemon."""
    from batch_cli.instance import prepare
    from resources.settings import Settings

    home = tmp_path_factory.mktemp("e2e_ui_home")
    isolated_env.setenv("BATCH_ADMIN_HOME", str(home))
    isolated_env.setenv("DAGSTER_HOME", str(home / "dagster"))  # recorded, so it is restored afterwards
    dagster_home = prepare(Settings.from_env()).dagster_home
    with dagster_services(dagster_home, dict(os.environ), home / "logs", daemon=False) as services:
        yield services


def headless(chromium: str, tmp_path, url: str, *output: str) -> subprocess.CompletedProcess:
    """One chromium run with a throwaway profile; virtual time lets the single-page app render."""
    profile = tmp_path / f"profile_{len(list(tmp_path.glob('profile_*')))}"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--virtual-time-budget=15000", "--window-size=1400,900", *output, url]
    try:
        return subprocess.run(cmd, capture_output=True, timeout=CHROMIUM_TIMEOUT_S, check=True)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def dom(chromium: str, tmp_path, url: str) -> str:
    return headless(chromium, tmp_path, url, "--dump-dom").stdout.decode(errors="replace")


def test_the_asset_graph_page_shows_every_monthly_asset(webserver, chromium, tmp_path):
    page = dom(chromium, tmp_path, f"{webserver.url}/asset-groups/monthly_batch")
    assert [asset for asset in MONTHLY_ASSETS if asset not in page] == []


def test_the_proposal_checks_page_names_every_blocking_check(webserver, chromium, tmp_path):
    page = dom(chromium, tmp_path, f"{webserver.url}/assets/allocation_proposal?view=checks")
    assert [check for check in PROPOSAL_CHECKS if check not in page] == []


def test_the_partitions_page_lists_the_monthly_keys(webserver, chromium, tmp_path):
    from assets.partitions import monthly_partitions

    page = dom(chromium, tmp_path, f"{webserver.url}/assets/allocation_proposal?view=partitions")
    assert "allocation_proposal" in page
    assert monthly_partitions.get_partition_keys()[-1] in page  # next month, the newest key


def test_a_screenshot_of_the_asset_graph_is_a_png(webserver, chromium, tmp_path):
    shot = tmp_path / "asset_graph.png"
    headless(chromium, tmp_path, f"{webserver.url}/asset-groups/monthly_batch", f"--screenshot={shot}")
    data = shot.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000
