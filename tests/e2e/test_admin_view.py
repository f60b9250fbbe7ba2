"""The admin view in a real browser (Playwright driving Debian's chromium) over a month materialized by two
real runs: the months, month, diff and approvals pages render, their charts load through htmx, and the
Content-Security-Policy blocks nothing the pages need. Screenshots go to test-artifacts/e2e/ (and to
docs/img/ with BATCH_ADMIN_UPDATE_SCREENSHOTS=1, for docs/admin-view.md)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from assets.partitions import monthly_partitions
from batch_cli.instance import REPO_ROOT, WORKSPACE_YAML
from batch_cli.main import main
from resources.control_store import ControlStore
from resources.settings import Settings
from resources.storage import ExportStore
from tests.e2e.conftest import dagster_services, free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

MONTH = monthly_partitions.get_partition_keys()[-1]
ARTIFACTS = Path(os.environ.get("BATCH_ADMIN_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts")) / "e2e"
DOCS_IMG = REPO_ROOT / "docs" / "img"
STARTUP_TIMEOUT_S = 60
VIEWPORT = {"width": 1360, "height": 900}
# Every image of the page loaded, with pixels (a chart that failed to load has naturalWidth 0).
IMAGES_LOADED = "() => Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"


def cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output + result.stderr
    return result.output


@pytest.fixture(scope="module")
def month_home(isolated_env, tmp_path_factory) -> Path:
    """A demo month run twice from the CLI (the second after a pin, with a note), its version 2 put up for finalizing."""
    home = tmp_path_factory.mktemp("view_home")
    isolated_env.setenv("BATCH_ADMIN_HOME", str(home))
    for name, value in Settings.from_env().environment().items():
        isolated_env.setenv(name, value)
    cli("demo-data", MONTH, "--requests", "600", "--resources", "40", "--seed", "7")
    cli("params", MONTH, "--actor", "alice", "--set", "time_limit_s=2")
    cli("run", MONTH, "--actor", "alice", "--note", "first look")
    rows = ExportStore(home).read_version(MONTH, 1)
    placed = rows[rows["resource_id"].notna()]
    request = placed.iloc[0]
    other = placed[(placed["service"] == request.service) & (placed["region"] == request.region)
                   & (placed["resource_id"] != request.resource_id)]["resource_id"].iloc[0]
    cli("adjust", MONTH, "--actor", "alice", "--pin", f"{request.request_id}={other}", "--note", "customer asked")
    cli("run", MONTH, "--actor", "alice", "--note", "pinned one request for its customer")
    cli("finalize", MONTH, "--version", "2", "--actor", "alice", "--note", "reviewed with the service owners")
    assert [v["version"] for v in ControlStore(Settings.from_env().control_url).versions(MONTH)] == [1, 2]
    return home


@contextmanager
def serving(home: Path, dagster_url: str | None = None) -> Iterator[str]:
    """`python -m batch_view` without its own Dagster UI on a free port, stopped afterwards."""
    port = free_port()
    log = home / f"view_{port}.log"
    extra = ["--dagster-url", dagster_url] if dagster_url else []
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "batch_view", "--no-dagster", "--host", "127.0.0.1",
                                 "--port", str(port), "--workspace", str(WORKSPACE_YAML), *extra],
                                env=dict(os.environ), cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://localhost:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(url + "/", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                assert time.monotonic() < deadline, f"the view did not answer:\n{log.read_text()}"
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def view(month_home) -> Iterator[str]:
    with serving(month_home) as url:
        yield url


def shoot(page, name: str, selector: str | None = None) -> Path:
    """A full-page screenshot (or of one element) kept as an artefact, and in docs/img/ when asked."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    paths = [ARTIFACTS / f"{name}.png"]
    if os.environ.get("BATCH_ADMIN_UPDATE_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        paths.append(DOCS_IMG / f"{name}.png")
    for path in paths:
        if selector:
            page.locator(selector).screenshot(path=str(path))
        else:
            page.screenshot(path=str(path), full_page=True)
    return paths[0]


def test_the_months_and_month_pages_of_a_materialized_month_render_in_chromium(view, browser):
    page = browser.new_page(viewport=VIEWPORT)
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))

    page.goto(view + "/")
    row = page.locator(f"tr:has(a[href='/month/{MONTH}'])")
    assert row.locator(".phase").inner_text() == "proposed"
    assert "v2" in row.inner_text() and page.locator(".demo").is_visible()
    shoot(page, "admin-months")

    page.select_option("select[name=person]", "alice")  # the demo sign-in: a form, a cookie, no script
    page.click("#demo-signin button")
    assert "signed in as alice" in page.locator("header").inner_text()
    page.click(f"a[href='/month/{MONTH}']")
    page.wait_for_selector("#charts img", timeout=60_000)  # htmx swapped the version's charts in
    page.wait_for_function(IMAGES_LOADED, timeout=60_000)
    assert page.locator("h1").inner_text().startswith(MONTH)
    assert "pinned one request for its customer" in page.locator("table").nth(3).inner_text() or \
        "pinned one request for its customer" in page.content()
    assert page.locator("#charts img").count() >= 2
    assert "all" in page.get_by_text("rules hold").inner_text()  # the run's expectations check passed
    page.click("form[action$='/lock'] button")  # alice locks the month for herself, signed by the server
    assert "Temporary lock (active): alice" in page.locator("section.state").inner_text()
    shoot(page, "admin-month")

    page.click("form[action$='/diff'] button")  # compare version 1 with version 2
    page.wait_for_url("**/diff?from=1&to=2")
    assert "1 moved" in page.content() or "moved" in page.locator("main").inner_text()
    shoot(page, "admin-diff")

    page.goto(view + "/approvals")
    assert f"finalize {MONTH} version 2" in page.locator("main").inner_text()
    shoot(page, "admin-approvals")

    page.close()
    assert problems == []  # nothing refused by the CSP, no script error


def test_alice_runs_the_month_from_the_view_through_the_dagster_queue(month_home, browser):
    with dagster_services(Settings.from_env().dagster_home, dict(os.environ), month_home / "logs") as services, \
            serving(month_home, services.url) as url:
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(f"{url}/month/{MONTH}")
        page.select_option("select[name=person]", "alice")
        page.click("#demo-signin button")
        page.fill("#run-form input[name=note]", "a third look from the view")
        page.click("#run-form button")
        assert page.url.endswith(f"/month/{MONTH}")
        store = ControlStore(Settings.from_env().control_url)
        deadline = time.monotonic() + 240
        while len(store.versions(MONTH)) < 3:
            assert time.monotonic() < deadline, services.logs()
            time.sleep(0.5)
        version = store.versions(MONTH)[-1]
        assert (version["version"], version["actor"], version["note"]) == (3, "alice", "a third look from the view")
        page.goto(f"{url}/month/{MONTH}")
        assert "a third look from the view" in page.locator("main").inner_text()
        page.close()
