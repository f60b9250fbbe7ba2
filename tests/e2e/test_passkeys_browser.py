"""Passkeys in a real browser: Debian's chromium with the DevTools Protocol's virtual authenticator (ctap2,
internal, user verification). alice and bob register passkeys; alice requests finalize with hers and has no
Approve button; bob approves with his; the month shows the approval. In CI (CI=true) this never skips."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from batch.inputs import load_landing
from tests.cli.test_cli_views import MONTH, write_version
from tests.e2e.conftest import missing
from tests.e2e.test_admin_view import VIEWPORT, cli, serving, shoot

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

AUTHENTICATOR = {"protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
                 "isUserVerified": True, "automaticPresenceSimulation": True}
WAIT_MS = 30_000


@pytest.fixture(scope="module")
def passkey_home(isolated_env, tmp_path_factory) -> Path:
    """A demo month landed with two versions (written as a run writes them), no request yet."""
    home = tmp_path_factory.mktemp("passkey_home")
    isolated_env.setenv("BATCH_ADMIN_HOME", str(home))
    cli("demo-data", MONTH, "--requests", "300", "--resources", "30", "--seed", "5")
    tables = load_landing(home, MONTH)
    write_version(home, MONTH, 1, tables)
    write_version(home, MONTH, 2, tables, moved=10, note="pinned the big ones")
    return home


@pytest.fixture(scope="module")
def chromium_browser(chromium):
    """Playwright's chromium, Debian's binary (Playwright downloads no browser here)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed (pip install -r requirements.lock)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        launched.close()


def person(browser, url: str, who: str, problems: list[str]) -> Iterator:
    """A browser profile of its own (cookies) with a virtual platform authenticator, signed in as `who`."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send("WebAuthn.addVirtualAuthenticator", {"options": AUTHENTICATOR})
    page.goto(url + "/people")
    page.select_option("select[name=person]", who)
    page.click("header button[type=submit]")
    assert f"signed in as {who}" in page.locator("header").inner_text()
    return page


def enrol(page, who: str) -> None:
    page.click("#demo-enrol")  # the demo signs the enrolment link with who's demo key
    page.wait_for_url("**/passkey/enroll?token=*")
    page.click("#register-passkey")
    page.wait_for_url("**/people", timeout=WAIT_MS)
    assert who in page.locator("#passkeys + table").inner_text()


def test_alice_and_bob_register_passkeys_alice_requests_finalize_and_bob_approves_in_chromium(
        passkey_home, chromium_browser):
    problems: list[str] = []
    with serving(passkey_home) as url:
        alice = person(chromium_browser, url, "alice", problems)
        enrol(alice, "alice")
        bob = person(chromium_browser, url, "bob", problems)
        enrol(bob, "bob")

        alice.goto(f"{url}/month/{MONTH}")
        alice.select_option("#finalize-form select[name=version]", "2")
        alice.fill("#finalize-form input[name=note]", "reviewed with the service owners")
        alice.click("#finalize-form button")
        alice.wait_for_selector("#requests-table", timeout=WAIT_MS)
        assert "pending" in alice.locator("#requests-table").inner_text()

        alice.goto(f"{url}/approvals")
        assert alice.locator("button.approve").count() == 0
        assert "You filed this request" in alice.locator("main").inner_text()

        bob.goto(f"{url}/approvals")
        assert f"finalize {MONTH} version 2" in bob.locator("main").inner_text()
        shoot(bob, "admin-approvals-passkey")
        bob.click("button.approve")
        bob.wait_for_function("() => document.querySelector('button.approve') === null", timeout=WAIT_MS)
        bob.goto(f"{url}/month/{MONTH}")
        requests = bob.locator("#requests-table").inner_text()
        assert "approved" in requests and "bob" in requests
        for page in (alice, bob):
            page.context.close()
    assert problems == []  # nothing refused by the CSP, no script error
