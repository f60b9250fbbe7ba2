"""The Dagster UI in headless chromium: the monthly asset graph, its checks and partitions, a version's charts
in its metadata, and the version's HTML report. Screenshots are kept under test-artifacts/e2e/."""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import pytest
from click.testing import CliRunner
from websockets.sync.client import connect

from batch_cli.instance import REPO_ROOT
from checks import names
from tests.e2e.conftest import dagster_services

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

MONTHLY_ASSETS = ("landed_inputs", "validated_inputs", "capacity_plan", "allocation_proposal",
                  "allocation_export", "final_allocation")
PROPOSAL_CHECKS = (names.NO_RESOURCE_OVER_CAPACITY, names.NO_INELIGIBLE_PAIR, names.MUST_ALLOCATE_REQUESTS_SERVED)
CHROMIUM_TIMEOUT_S = 60
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Screenshots a person can look at after the run (CI keeps the folder as an artefact).
ARTIFACTS = Path(os.environ.get("BATCH_ADMIN_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts")) / "e2e"
# Every embedded chart as the page shows it: loaded, its natural size and its size on screen.
CHARTS_JS = """JSON.stringify(Array.from(document.images).filter(i => i.src.startsWith('data:image/png'))
  .map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth, height: i.naturalHeight,
              shown: Math.round(i.getBoundingClientRect().width)})))"""


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


class DevTools:
    """Headless chromium driven over the DevTools protocol: navigate, evaluate, click, screenshot."""

    def __init__(self, chromium: str, width: int = 1400, height: int = 1000):
        self.width, self.height = width, height
        self.profile = tempfile.mkdtemp(prefix="devtools_profile_")
        self.proc = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
             "--disable-background-networking", "--disable-component-update", "--remote-debugging-port=0",
             f"--user-data-dir={self.profile}", f"--window-size={width},{height}", "about:blank"],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        port = None
        deadline = time.monotonic() + CHROMIUM_TIMEOUT_S
        while port is None and time.monotonic() < deadline:
            found = re.search(r"DevTools listening on ws://127.0.0.1:(\d+)/", self.proc.stderr.readline())
            port = int(found.group(1)) if found else None
        assert port, "chromium did not open its DevTools port"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            page = next(t for t in json.load(response) if t["type"] == "page")
        self.stack = ExitStack()
        self.ws = self.stack.enter_context(connect(page["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024,
                                                   open_timeout=10))
        self.ids = itertools.count(1)
        self.send("Page.enable")

    def send(self, method: str, **params):
        ident = next(self.ids)
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=CHROMIUM_TIMEOUT_S))
            if message.get("id") == ident:
                assert "error" not in message, f"{method}: {message['error']}"
                return message.get("result", {})

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"].get("exception", {}).get("description", "script error"))
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = CHROMIUM_TIMEOUT_S):
        """Poll a script until it returns something truthy (the single-page app renders asynchronously)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression)
            except RuntimeError:  # the document is still being replaced
                value = None
            if value:
                return value
            time.sleep(0.5)
        raise TimeoutError(f"the page never satisfied: {expression}")

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def screenshot(self, name: str, full_page: bool = False) -> Path:
        if full_page:
            height = self.evaluate("document.documentElement.scrollHeight")
            self.send("Emulation.setDeviceMetricsOverride", width=self.width, height=min(int(height), 8000),
                      deviceScaleFactor=1, mobile=False)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / name
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))
        return path

    def close(self) -> None:
        try:
            self.stack.close()
        finally:
            self.proc.terminate()
            self.proc.wait(timeout=20)
            shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture
def browser(chromium):
    driver = DevTools(chromium)
    yield driver
    driver.close()


def cli(*args: str) -> str:
    from batch_cli.main import main

    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def materialized(webserver, isolated_env):
    """One small month run through the CLI into the webserver's instance (version 1)."""
    from assets.partitions import monthly_partitions
    from resources.settings import Settings

    for name, value in Settings.from_env().environment().items():
        isolated_env.setenv(name, value)
    month = monthly_partitions.get_partition_keys()[-1]
    cli("demo-data", month, "--requests", "300", "--resources", "30", "--seed", "4")
    cli("params", month, "--actor", "alice", "--set", "time_limit_s=1")
    cli("run", month, "--actor", "alice")
    return month


def chart_rows(browser: DevTools) -> list[str]:
    return browser.evaluate("""Array.from(document.querySelectorAll('tr'))
        .filter(tr => tr.cells.length > 1 && tr.cells[0].innerText.trim().startsWith('chart:'))
        .map(tr => tr.cells[0].innerText.trim())""")


@pytest.mark.timeout(420)
def test_the_export_asset_page_shows_the_figures_inline_and_every_chart_renders(webserver, materialized, browser):
    browser.goto(f"{webserver.url}/assets/allocation_export?partition={materialized}")
    browser.wait_for("document.body.innerText.includes('Allocated (incl. pinned)')", 90)
    text = browser.evaluate("document.body.innerText")
    assert "Success rate" in text and "Row count" in text and "request_id" in text  # summary, row count, schema
    assert not re.search(r"\b0\.\d{6,}", text)  # no raw ratios like 0.8340757238307349
    browser.evaluate("Array.from(document.querySelectorAll('td')).find(td => td.innerText.trim() === 'summary')"
                     ".scrollIntoView()")
    browser.screenshot("asset_page_metadata.png")
    titles = chart_rows(browser)
    assert any("utilization" in t.lower() for t in titles) and any("reason" in t.lower() for t in titles)
    for index, title in enumerate(titles):
        browser.evaluate(f"""Array.from(document.querySelectorAll('tr'))
            .filter(tr => tr.cells.length > 1 && tr.cells[0].innerText.trim() === {json.dumps(title)})[0]
            .querySelector('a, button, [role=button]').click()""")
        charts = json.loads(browser.wait_for(
            f"(() => {{ const c = {CHARTS_JS.strip()}; return JSON.parse(c).some(i => i.complete && i.shown > 0) && c; }})()",
            20))
        assert charts and all(c["complete"] and c["width"] > 0 and c["height"] > 0 and c["shown"] > 0 for c in charts)
        time.sleep(0.5)  # the dialog fades in
        browser.screenshot(f"asset_page_chart_{index}.png")
        browser.evaluate("Array.from(document.querySelectorAll('button')).find(b => b.innerText.trim() === 'Close').click()")
        browser.wait_for(f"!({CHARTS_JS.strip()}).includes('complete')", 10)


@pytest.mark.timeout(420)
def test_the_versions_html_report_renders_its_charts(webserver, materialized, browser):
    from resources.settings import Settings
    from resources.storage import ExportStore

    report = ExportStore(Settings.from_env().home).report_path(materialized, 1)
    browser.goto(report.as_uri())
    charts = json.loads(browser.wait_for(f"document.images.length && Array.from(document.images).every(i => i.complete) && {CHARTS_JS.strip()}"))
    assert len(charts) >= 2  # utilization heat map and reasons, at least
    assert all(c["width"] >= 300 and c["height"] >= 100 and c["shown"] > 0 for c in charts), charts
    text = browser.evaluate("document.body.innerText")
    for heading in ("How full each service is", "Who was left out, and why", "What changed since the previous version",
                    "Who did what"):
        assert heading in text
    shot = browser.screenshot("report.png", full_page=True)
    assert shot.read_bytes().startswith(PNG_SIGNATURE)


@pytest.mark.timeout(420)
def test_a_checks_page_names_the_month_and_shows_the_figure_with_its_threshold(webserver, materialized, browser):
    browser.goto(f"{webserver.url}/assets/allocation_export?view=checks")
    browser.wait_for("document.body.innerText.includes('success_rate_at_least_minimum')", 90)
    browser.evaluate("Array.from(document.querySelectorAll('a, button, [role=button], div'))"
                     ".find(e => e.innerText && e.innerText.trim().startsWith('success_rate_at_least_minimum')).click()")
    browser.wait_for(f"document.body.innerText.includes('{materialized}: success rate')", 60)
    text = browser.evaluate("document.body.innerText")
    assert "min_success_rate" in text and "month" in text
    browser.screenshot("check_page_success_rate.png")
    browser.goto(f"{webserver.url}/assets/capacity_plan?view=events&partition={materialized}")
    browser.wait_for("document.body.innerText.includes('demand_vs_capacity')", 90)
    inline = browser.evaluate("""Array.from(document.querySelectorAll('tr'))
        .filter(tr => tr.cells.length > 1 && tr.cells[0].innerText.trim() === 'demand_vs_capacity')
        .map(tr => tr.cells[1].querySelectorAll('table tr').length)[0]""")
    assert inline and inline > 1  # a table of rows in place, not "[Show Markdown]"
    browser.screenshot("capacity_plan_metadata.png")
