"""The admin view's story in a real browser: Debian's chromium with the DevTools Protocol's virtual authenticator
(ctap2, internal, user verification), the Dagster webserver and daemon running the month's jobs. alice and bob
register passkeys; alice signs in with hers, sets a parameter, plans, runs the demo month from the view and watches its
progress, pins one request, runs again and sees the diff, requests finalize; alice has no Approve button and her
forged approval is refused; bob approves with his passkey (and downloads the official export), and the assertion his browser sent, sent again from
his session or from another origin, is refused; the month shows final and locked; dana (an approver)
may not request an unlock, alice does and bob approves it; `batch-admin audit --verify` re-verifies every
passkey assertion. In CI (CI=true) this never skips."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest

from batch.passkeys import is_passkey_signature
from batch_cli.instance import instance_yaml
from resources.control_store import ControlStore
from resources.settings import Settings
from resources.storage import ExportStore
from tests.cli.test_cli_views import MONTH
from tests.e2e.conftest import dagster_services
from tests.e2e.test_admin_view import VIEWPORT, cli, serving, shoot

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

AUTHENTICATOR = {"protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
                 "isUserVerified": True, "automaticPresenceSimulation": True}
WAIT_MS = 30_000
RUN_WAIT_S = 240
# A refused POST shows in the console as a failed resource (its sentence is on the page): expected there only.
REFUSED_STATUS = ("status of 400", "status of 403")


@pytest.fixture(scope="module")
def story_home(isolated_env, tmp_path_factory) -> Path:
    """A small demo month landed (120 requests x 12 resources: each run solves in about a second), no version."""
    home = tmp_path_factory.mktemp("passkey_home")
    isolated_env.setenv("BATCH_ADMIN_HOME", str(home))
    for name, value in Settings.from_env().environment().items():
        isolated_env.setenv(name, value)
    cli("demo-data", MONTH, "--requests", "120", "--resources", "12", "--seed", "5")
    settings = Settings.from_env()
    settings.dagster_home.mkdir(parents=True, exist_ok=True)  # the instance the Dagster services start on
    shutil.copyfile(instance_yaml(settings), settings.dagster_home / "dagster.yaml")
    return home


def person(browser, url: str, who: str, problems: list[str]):
    """A browser profile of its own (cookies) with a virtual platform authenticator, signed in as `who` on the demo."""
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    page = context.new_page()
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send("WebAuthn.addVirtualAuthenticator", {"options": AUTHENTICATOR})
    page.goto(url + "/people")
    page.select_option("#demo-signin select[name=person]", who)
    page.click("#demo-signin button")
    assert f"signed in as {who}" in page.locator("header").inner_text()
    return page


def enrol(page, who: str) -> None:
    page.click("#demo-enrol")  # the demo signs the enrolment link with who's demo key
    page.wait_for_url("**/passkey/enroll?token=*")
    page.click("#register-passkey")
    page.wait_for_url("**/people", timeout=WAIT_MS)
    assert who in page.locator("#passkeys + table").inner_text()


def sign_in_with_passkey(page, who: str) -> None:
    """Sign out, then in again with the passkey (a discoverable credential: no name typed)."""
    page.click("header button:has-text('Sign out')")
    shoot(page, "admin-signin", "header")
    page.click("#passkey-signin")
    page.wait_for_function(f"() => document.querySelector('header').innerText.includes('signed in as {who}')",
                           timeout=WAIT_MS)


def passkey_submit(page, form: str) -> None:
    """Submit a passkey-signed form and wait for the page it leads to."""
    with page.expect_navigation(timeout=WAIT_MS):
        page.click(f"{form} button[type=submit]")


def versions(store: ControlStore) -> list[int]:
    return [v["version"] for v in store.versions(MONTH)]


def run_and_watch(page, url: str, store: ControlStore, note: str | None, services) -> bool:
    """alice presses Run; the month's JSON is polled until the new version is written and the run is over.
    Whether the run was seen in progress (its lease, as the month page shows it)."""
    expected = len(versions(store)) + 1
    if note:
        page.fill("#run-form input[name=note]", note)
    passkey_submit(page, "#run-form")
    seen = False
    deadline = time.monotonic() + RUN_WAIT_S
    while True:
        in_progress = page.request.get(f"{url}/month/{MONTH}.json").json()["run"] is not None
        seen = seen or in_progress
        if len(versions(store)) == expected and not in_progress:  # written, and the run let go of the month
            return seen
        assert time.monotonic() < deadline, services.logs()
        time.sleep(0.3)


def wait_for(check, what: str, services) -> None:
    deadline = time.monotonic() + RUN_WAIT_S
    while not check():
        assert time.monotonic() < deadline, f"{what}:\n{services.logs()}"
        time.sleep(0.5)


def test_the_month_is_run_adjusted_finalized_and_unlocked_from_the_view_with_passkeys(story_home, browser):
    problems: list[str] = []
    store = ControlStore(Settings.from_env().control_url)
    with dagster_services(Settings.from_env().dagster_home, dict(os.environ), story_home / "logs") as services, \
            serving(story_home, services.url) as url:
        alice = person(browser, url, "alice", problems)
        enrol(alice, "alice")
        sign_in_with_passkey(alice, "alice")
        bob = person(browser, url, "bob", problems)
        enrol(bob, "bob")

        alice.goto(f"{url}/month/{MONTH}")
        alice.select_option("#params-form select[name=param]", "time_limit_s")
        alice.fill("#params-form input[name=value]", "1")
        passkey_submit(alice, "#params-form")
        assert store.params(MONTH)["time_limit_s"] == 1
        shoot(alice, "admin-month-passkey")
        passkey_submit(alice, "#plan-form")  # the preview, queued with alice's ticket as `batch-admin plan`
        wait_for(lambda: store.latest_plan(MONTH) is not None, "the plan run did not finish", services)
        alice.goto(f"{url}/month/{MONTH}")
        assert "Planned " in alice.locator("#plan + table + p").inner_text()

        assert run_and_watch(alice, url, store, None, services)  # the run showed in progress on the month page
        placed = ExportStore(story_home).read_version(MONTH, 1)
        placed = placed[placed["resource_id"].notna()]
        request = placed.iloc[0]
        other = placed[(placed["service"] == request.service) & (placed["region"] == request.region)
                       & (placed["resource_id"] != request.resource_id)]["resource_id"].iloc[0]
        alice.goto(f"{url}/month/{MONTH}")
        alice.select_option("#adjust-form select[name=kind]", "pin")
        alice.fill("#adjust-form input[name=request]", f"{request.request_id}={other}")
        alice.fill("#adjust-form input[name=note]", "customer asked")
        passkey_submit(alice, "#adjust-form")
        assert f"{request.request_id} pinned to {other}" in alice.locator("#adjustments + ul").inner_text()
        run_and_watch(alice, url, store, "pinned one request for its customer", services)

        alice.goto(f"{url}/month/{MONTH}")
        alice.click("form[action$='/diff'] button")  # version 1 against version 2
        alice.wait_for_url("**/diff?from=1&to=2")
        assert request.request_id in alice.locator("main").inner_text()  # the pinned request moved
        shoot(alice, "admin-diff-passkey")

        alice.goto(f"{url}/month/{MONTH}")
        alice.select_option("#finalize-form select[name=version]", "2")
        alice.fill("#finalize-form input[name=note]", "reviewed with the service owners")
        passkey_submit(alice, "#finalize-form")
        assert "pending" in alice.locator("#requests-table").inner_text()
        filed = store.requests(MONTH)[0]

        alice.goto(f"{url}/approvals")
        assert alice.locator("button.approve").count() == 0
        assert "You filed this request" in alice.locator("main").inner_text()
        # alice forges the Approve form the page did not give her and signs it with her own passkey.
        alice.evaluate("""(id) => { const f = document.createElement('form'); f.setAttribute('data-passkey', '');
            f.method = 'post'; f.action = '/passkey/act'; f.id = 'forged';
            f.innerHTML = '<input name="csrf" value="' + document.querySelector('input[name=csrf]').value + '">' +
              '<input name="action" value="approve"><input name="request_id" value="' + id + '">' +
              '<button type="submit">Approve</button><output class="passkey-out"></output>';
            document.querySelector('main').appendChild(f); }""", filed.id)
        alice.click("#forged button")
        alice.wait_for_function("() => document.querySelector('#forged output').innerText.includes('four eyes')",
                                timeout=WAIT_MS)
        assert store.request(filed.id).status == "pending"
        assert all(any(s in p for s in REFUSED_STATUS) for p in problems)
        problems.clear()

        bob.goto(f"{url}/approvals")
        assert f"finalize {MONTH} version 2" in bob.locator("main").inner_text()
        shoot(bob, "admin-approvals-passkey")
        sent: list[str] = []  # what bob's browser posts: the assertion its virtual authenticator made
        bob.on("request", lambda r: sent.append(r.post_data or "") if r.url.endswith("/passkey/act") else None)
        bob.click("button.approve")
        bob.wait_for_function("() => document.querySelector('button.approve') === null", timeout=WAIT_MS)
        wait_for(lambda: store.month(MONTH)["final_version"] == 2, "the finalize run did not finish", services)
        # The same signed approval sent again from bob's session, and from another origin: both refused.
        approvals = sum(1 for entry in store.audit_entries() if entry["action"] == "approve")
        for origin in (url, "http://evil.example"):
            again = bob.request.post(f"{url}/passkey/act", data=sent[-1], headers={
                "content-type": "application/x-www-form-urlencoded", "origin": origin})
            assert again.status in (400, 403) and again.json()["error"], again.text()
        assert sum(1 for entry in store.audit_entries() if entry["action"] == "approve") == approvals
        bob.goto(f"{url}/month/{MONTH}")
        state = bob.locator("section.state").inner_text()
        assert "Final: version 2" in state and "approved by bob" in state
        assert bob.locator("h1 .phase").inner_text() == "finalized"
        assert "\tdone\tbob\t" in bob.locator("#requests-table").inner_text()  # approved by bob, carried out
        shoot(bob, "admin-month-final")
        bob.select_option("#export-form select[name=version]", "final")
        bob.select_option("#export-form select[name=format]", "parquet")
        with bob.expect_download(timeout=WAIT_MS) as got:  # signed with bob's passkey, audited, then sent
            bob.click("#export-form button[type=submit]")
        official, final = pd.read_parquet(got.value.path()), ExportStore(story_home).read_final(MONTH)
        assert len(official) == len(final) and set(official["request_id"]) == set(final["request_id"])
        assert (official.sort_values("request_id")["resource_id"].fillna("").tolist()
                == final.sort_values("request_id")["resource_id"].fillna("").tolist())

        dana = person(browser, url, "dana", problems)
        enrol(dana, "dana")
        dana.goto(f"{url}/month/{MONTH}")
        dana.fill("#unlock-form input[name=reason]", "a late correction")
        dana.click("#unlock-form button")
        dana.wait_for_function("() => document.querySelector('#unlock-form output').innerText.includes('not an admin')",
                               timeout=WAIT_MS)
        assert all(any(s in p for s in REFUSED_STATUS) for p in problems)
        problems.clear()
        alice.goto(f"{url}/month/{MONTH}")
        alice.fill("#unlock-form input[name=reason]", "a late correction from dana's team")
        passkey_submit(alice, "#unlock-form")
        assert [r.kind for r in store.requests(MONTH) if r.status == "pending"] == ["unlock"]
        bob.goto(f"{url}/approvals")
        bob.click("button.approve")
        bob.wait_for_function("() => document.querySelector('button.approve') === null", timeout=WAIT_MS)
        wait_for(lambda: store.month(MONTH)["final_version"] is None, "the unlock run did not finish", services)
        bob.goto(f"{url}/month/{MONTH}")
        assert bob.locator("h1 .phase").inner_text() == "proposed"
        for page in (alice, bob, dana):
            page.context.close()

    signed = {e["action"]: json.loads(e["signed_json"]) for e in store.audit_entries() if e.get("signed_json")}
    for action in ("params", "adjust", "request", "approve", "export"):
        assert is_passkey_signature(signed[action]["signature"]), action
    cli("audit", "--verify")  # every passkey assertion re-verified offline from the registered public keys
    assert problems == []  # nothing refused by the CSP, no script error
