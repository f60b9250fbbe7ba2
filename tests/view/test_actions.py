"""The view's changes on the embedded demo: sign in, lock and release, export; refused from another origin,
without the CSRF token, without a session, off the demo; every refusal changes nothing."""

from __future__ import annotations

import io
import re
import shutil

import pandas as pd
import pytest
from starlette.testclient import TestClient

from batch.identity import TICKET_TAG, Signed
from batch_view.app import create_app
from batch_view.sources import Sources
from resources.settings import DEFAULT_ROLES_FILE, Settings
from tests.view.conftest import DAGSTER_URL, ORIGIN, csrf_of

PROBLEM = re.compile(r'class="problem">(.*?)<', re.S)


@pytest.fixture
def browser(landed) -> TestClient:
    """A browser on the view at ORIGIN, with its CSRF cookie (it opened the months page)."""
    with TestClient(create_app(Sources.open(Settings.from_env(), DAGSTER_URL)), base_url=ORIGIN) as client:
        client.csrf = csrf_of(client.get("/").text)  # type: ignore[attr-defined]
        yield client


def post(client: TestClient, path: str, origin: str = ORIGIN, **fields: str):
    return client.post(path, data={"csrf": client.csrf, **fields}, headers={"origin": origin},
                       follow_redirects=False)


def replace_cookie(client: TestClient, name: str, value: str | None) -> None:
    """The browser's cookie `name` replaced (or removed with None), the others kept."""
    kept = {key: found for key, found in dict(client.cookies).items() if key != name}
    client.cookies.clear()
    for key, found in {**kept, **({name: value} if value is not None else {})}.items():
        client.cookies.set(key, found)


def audit(client: TestClient, month: str) -> list[tuple[str, str]]:
    return [(e["action"], e["actor"]) for e in client.get(f"/month/{month}.json").json()["audit"]]


def test_a_demo_person_signs_in_locks_and_releases_the_month_signed_with_their_demo_key(landed, browser):
    signed_in = post(browser, "/signin", person="alice", back=f"/month/{landed.month}")
    assert (signed_in.status_code, signed_in.headers["location"]) == (303, f"/month/{landed.month}")
    cookie = signed_in.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "signed in as <b>alice</b>" in browser.get(f"/month/{landed.month}").text

    assert post(browser, f"/month/{landed.month}/lock", admins="alice,carol", ttl_hours="2").status_code == 303
    lock = browser.get(f"/month/{landed.month}.json").json()["lock"]
    assert (lock["holder"], lock["admins"], lock["active"]) == ("alice", ["alice", "carol"], True)
    assert post(browser, f"/month/{landed.month}/release").status_code == 303
    assert browser.get(f"/month/{landed.month}.json").json()["lock"] is None
    assert audit(browser, landed.month)[-2:] == [("lock", "alice"), ("release", "alice")]
    assert all(e["signed"] for e in browser.get(f"/month/{landed.month}.json").json()["audit"][-2:])


def test_the_store_refuses_a_second_lock_and_a_bad_ttl_in_one_sentence_and_nothing_changes(landed, browser):
    post(browser, "/signin", person="alice")
    post(browser, f"/month/{landed.month}/lock", admins="alice")
    post(browser, "/signin", person="carol")
    before = audit(browser, landed.month)
    second = post(browser, f"/month/{landed.month}/lock", admins="carol")
    assert second.status_code == 400 and f"Month {landed.month} is already locked by alice" in second.text
    bad = post(browser, f"/month/{landed.month}/release")
    assert bad.status_code == 400 and "Only alice, who holds the lock" in bad.text
    post(browser, "/signin", person="alice")
    ttl = post(browser, f"/month/{landed.month}/lock", admins="alice", ttl_hours="-1")
    assert ttl.status_code == 400 and "time to live must be more than 0" in ttl.text
    assert audit(browser, landed.month) == before
    assert browser.get(f"/month/{landed.month}.json").json()["lock"]["holder"] == "alice"


def test_a_download_is_the_export_stores_file_and_an_audited_export(landed, browser):
    post(browser, "/signin", person="bob")
    answer = post(browser, f"/month/{landed.month}/export", version="2", format="csv", status="unallocated")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    assert f'filename="{landed.month}_v2.csv"' in answer.headers["content-disposition"]
    rows = pd.read_csv(io.StringIO(answer.text))
    expected = landed.versions[2]
    assert sorted(rows["request_id"]) == sorted(expected.loc[expected["status"] == "unallocated", "request_id"])
    assert audit(browser, landed.month)[-1] == ("export", "bob")
    assert "xlsx" in browser.get(f"/month/{landed.month}").text  # the form offers every format


@pytest.mark.parametrize("attack", ["foreign origin", "no csrf token", "another browser's token", "no session",
                                    "a forged session"])
def test_a_change_without_origin_token_or_session_is_refused_and_changes_nothing(landed, browser, attack):
    post(browser, "/signin", person="alice")
    before = audit(browser, landed.month)
    path, fields, origin = f"/month/{landed.month}/lock", {"admins": "alice"}, ORIGIN
    if attack == "foreign origin":
        origin = "http://evil.example"
    elif attack == "no csrf token":
        browser.csrf = ""
    elif attack == "another browser's token":
        replace_cookie(browser, "batch_admin_csrf", "0" * 32)
    elif attack == "no session":
        replace_cookie(browser, "batch_admin_session", None)
    else:
        replace_cookie(browser, "batch_admin_session", "alice." + "0" * 64)
    refused = post(browser, path, origin=origin, **fields)
    assert refused.status_code == 403 and PROBLEM.search(refused.text)
    assert audit(browser, landed.month) == before and browser.get(f"/month/{landed.month}.json").json()["lock"] is None


def test_signing_in_is_refused_off_the_embedded_demo_and_for_people_without_a_demo_key(landed, tmp_path, monkeypatch):
    with TestClient(create_app(Sources.open(Settings.from_env(), DAGSTER_URL)), base_url=ORIGIN) as demo:
        demo.csrf = csrf_of(demo.get("/").text)
        unknown = post(demo, "/signin", person="mallory")
        assert unknown.status_code == 400 and "batch_admin_session" not in unknown.headers.get("set-cookie", "")
    roles = tmp_path / "roles.yaml"
    shutil.copyfile(DEFAULT_ROLES_FILE, roles)
    monkeypatch.setenv("BATCH_ADMIN_ROLES", str(roles))  # the same people, but a deployment's own roles file
    with TestClient(create_app(Sources.open(Settings.from_env(), DAGSTER_URL)), base_url=ORIGIN) as deployment:
        page = deployment.get("/").text
        assert "Demo person" not in page and "DEMO" not in page
        deployment.csrf = csrf_of(page) if 'name="csrf"' in page else deployment.cookies.get("batch_admin_csrf")
        refused = post(deployment, "/signin", person="alice")
        assert refused.status_code in (400, 403)
        assert "batch_admin_session" not in refused.headers.get("set-cookie", "")


def test_a_run_is_refused_by_the_clis_checks_before_anything_is_submitted(landed, browser):
    post(browser, "/signin", person="bob")
    not_admin = post(browser, f"/month/{landed.month}/run", note="again")
    assert not_admin.status_code == 400 and "bob is not an admin" in not_admin.text
    post(browser, "/signin", person="alice")
    no_note = post(browser, f"/month/{landed.month}/run")
    assert no_note.status_code == 400 and "from version 2 on a run needs a change note" in no_note.text
    post(browser, f"/month/{landed.month}/lock", admins="alice")
    post(browser, "/signin", person="carol")
    locked = post(browser, f"/month/{landed.month}/run", note="mine")
    assert locked.status_code == 400 and "alice" in PROBLEM.search(locked.text).group(1)
    assert [v["version"] for v in browser.get(f"/month/{landed.month}.json").json()["versions"]] == [2, 1]


def test_plan_from_the_view_submits_the_preview_job_with_the_persons_ticket(landed, view):
    post(view, "/signin", person="alice")
    planned = post(view, f"/month/{landed.month}/run", job="plan_job")
    assert planned.status_code in (200, 303), planned.text
    ((job, tags, _config),) = view.submitted
    assert (job, tags["dagster/partition"]) == ("plan_job", landed.month)
    assert Signed.decode(tags[TICKET_TAG]).details["job"] == "plan_job"
    unknown = post(view, f"/month/{landed.month}/run", job="unlock_job")
    assert unknown.status_code == 400 and len(view.submitted) == 1
    assert "A run is one of execute_job, plan_job, not &#39;unlock_job&#39;." in unknown.text
    assert 'value="plan_job"' in view.get(f"/month/{landed.month}").text  # the Plan button
