"""The admin view's pages in-process: what each shows in HTML, the same context as JSON, and its refusals."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import dagster as dg
import pytest

from assets.monthly import monthly_assets
from batch.formats import format_figure
from batch_cli.instance import prepare
from batch_view.app import CSP
from batch_view.server import address, dagster_command
from pipelines.definitions import defs
from resources.control_store import ControlStore
from resources.settings import Settings
from resources.storage import ExportStore
from tests.cli.test_cli_views import cli, write_version
from tests.signing import ticket_tags
from tests.view.conftest import DAGSTER_URL

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class Scripts(HTMLParser):
    """Every <script>, inline event handler and style attribute of a page: what the CSP would block."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str | None] = []
        self.inline: list[str] = []
        self.handlers: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        names = dict(attrs)
        if tag == "script":
            self.sources.append(names.get("src"))
            self._in_script = True
        self.handlers += [f"{tag}.{name}" for name in names if name.startswith("on") or name == "style"]

    def handle_endtag(self, tag):
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.inline.append(data)


def test_the_months_page_shows_each_month_with_its_figures_and_the_same_context_as_json(landed, client):
    page = client.get("/")
    assert page.status_code == 200
    data = client.get("/index.json").json()
    row = next(m for m in data["months"] if m["month"] == landed.month)
    stored = ControlStore(Settings.from_env().control_url).versions(landed.month)[-1]["metrics"]
    assert (row["phase"], row["latest_version"], row["final_version"], row["open_requests"]) == ("proposed", 2, None, 0)
    assert row["success_rate"] == stored["success_rate"]
    assert f'<a href="/month/{landed.month}">{landed.month}</a>' in page.text
    assert format_figure("success_rate", stored["success_rate"]) in page.text
    assert data["next_month"] in [m["month"] for m in data["months"]]


def test_the_month_page_shows_versions_inputs_audit_and_links_to_the_dagster_ui(landed, client):
    page = client.get(f"/month/{landed.month}")
    data = client.get(f"/month/{landed.month}.json").json()
    assert page.status_code == 200
    assert [v["version"] for v in data["versions"]] == [2, 1]
    assert data["versions"][0]["note"] == "pinned the big ones" and "pinned the big ones" in page.text
    assert {t["table"]: t["rows"] for t in data["inputs"]["tables"]}["requests"] == 300
    assert data["health"]["version"] == 2
    runs = f"{DAGSTER_URL}/runs?q%5B%5D=tag%3Adagster%2Fpartition%3D{landed.month}"
    assert data["dagster"]["runs"] == runs and runs in page.text.replace("&amp;", "&")
    assert f"{DAGSTER_URL}/assets/allocation_export?view=partitions&partition={landed.month}" in \
        page.text.replace("&amp;", "&")
    assert f'hx-get="/month/{landed.month}/report/2"' in page.text  # the charts load after the page


def test_a_month_whose_inputs_break_the_contract_names_table_column_rule_and_rows(landed, client):
    requests = landed.home / "landing" / landed.month / "requests.parquet"
    table = landed.tables.requests.astype({"units": object})
    table.loc[table.index[:3], "units"] = "lots"
    requests.unlink()
    table.to_csv(requests.with_suffix(".csv"), index=False)
    inputs = client.get(f"/month/{landed.month}.json").json()["inputs"]
    assert (inputs["ok"], inputs["table"], inputs["column"]) == (False, "requests", "units")
    assert len(inputs["rows"]) == 3 and inputs["rule"]
    page = client.get(f"/month/{landed.month}").text
    assert f"table: <b>requests</b>, column: <b>units</b>, rule: <b>{inputs['rule']}</b>" in page


def test_the_diff_page_counts_what_the_export_store_counts(landed, client):
    expected = ExportStore(landed.home).diff(landed.month, 1, 2, write=False)
    data = client.get(f"/month/{landed.month}/diff.json?from=1&to=2").json()
    assert data["counts"] == expected["counts"] and data["counts"]["moved"] > 0
    assert sum(group["moved"] for group in data["moved_by_group"]) == expected["counts"]["moved"]
    page = client.get(f"/month/{landed.month}/diff?from=1&to=2").text
    assert expected["moved"][0]["request_id"] in page


def test_a_versions_report_serves_its_charts_as_png_made_on_the_server(landed, client):
    report = client.get(f"/month/{landed.month}/report/2.json").json()
    names = [chart["name"] for chart in report["charts"]]
    assert "utilization_heatmap" in names and "change_from_previous" in names
    image = client.get(f"/month/{landed.month}/chart/2/utilization_heatmap.png")
    assert image.headers["content-type"] == "image/png" and image.content.startswith(PNG_SIGNATURE)
    assert client.get(f"/month/{landed.month}/chart/2/no_such_chart.png").status_code == 404
    assert client.get(f"/month/{landed.month}/chart/9/utilization_heatmap.png").status_code == 404


def test_an_open_finalize_request_shows_what_the_approver_signs(landed, client):
    cli("finalize", landed.month, "--version", "2", "--actor", "alice", "--note", "good enough")
    data = client.get("/approvals.json").json()
    (request,) = data["requests"]
    assert (request["what"], request["requested_by"], request["text"]) == \
        (f"finalize {landed.month} version 2", "alice", "good enough")
    assert request["signs"]["details"]["binding"]["version"] == 2
    assert dict(request["figures"])["Success rate"] == format_figure(
        "success_rate", ControlStore(Settings.from_env().control_url).versions(landed.month)[-1]["metrics"]["success_rate"])
    page = client.get("/approvals").text
    assert f"finalize {landed.month} version 2" in page and "good enough" in page
    months = client.get("/index.json").json()["months"]
    assert next(m for m in months if m["month"] == landed.month)["open_requests"] == 1


def test_a_request_that_expired_undecided_shows_as_expired_with_when_and_why(landed, client):
    cli("finalize", landed.month, "--version", "2", "--actor", "alice", "--note", "good enough")
    store = ControlStore(Settings.from_env().control_url)
    (request,) = store.requests(landed.month)
    (expired,) = store.expire_requests(now=request.expires_at + timedelta(minutes=1))
    data = client.get("/approvals.json").json()
    assert data["requests"] == []  # no longer open: no Approve button
    (shown,) = data["expired"]
    assert (shown["id"], shown["status"], shown["what"]) == (expired.id, "expired", f"finalize {landed.month} version 2")
    assert "within 72 hours" in shown["why"]
    page = client.get("/approvals").text
    assert f'id="request-{expired.id}"' in page and "Expired without a decision" in page and "within 72 hours" in page


def test_the_people_page_lists_roles_and_public_keys(home, client):
    people = {p["name"]: p for p in client.get("/people.json").json()["people"]}
    assert people["alice"]["admin"] and not people["alice"]["approver"]
    assert people["bob"]["approver"] and people["bob"]["key"]
    assert people["bob"]["key"] in client.get("/people").text


@pytest.mark.parametrize("path", ["/", "/approvals", "/people", "/month/{month}", "/month/{month}/diff?from=1&to=2",
                                  "/month/{month}/report/2", "/month/2026-13"])
def test_every_page_carries_the_csp_and_has_no_inline_or_external_script(landed, client, path):
    page = client.get(path.format(month=landed.month))
    assert page.headers["content-security-policy"] == CSP
    assert "'unsafe-inline'" not in CSP and "script-src 'self'" in CSP
    scripts = Scripts()
    scripts.feed(page.text)
    assert scripts.sources == ["/static/htmx.min.js", "/static/passkey.js"]
    assert (scripts.inline, scripts.handlers) == ([], [])


def test_htmx_is_served_by_the_view_itself_with_its_version(client):
    script = client.get("/static/htmx.min.js")
    assert script.status_code == 200
    assert re.match(r"/\* htmx 2\.\d+\.\d+ ", script.text)


@pytest.mark.parametrize(("path", "status", "words"), [
    ("/month/2026-13", 404, "must look like YYYY-MM"),
    ("/month/{month}/diff?from=1&to=7", 404, "7"),
    ("/month/{month}/diff?from=one&to=2", 400, "from must be a version number"),
    ("/month/{month}/report/5", 404, "5"),
])
def test_a_bad_address_is_one_sentence_in_html_and_in_json(landed, client, path, status, words):
    page = client.get(path.format(month=landed.month))
    assert page.status_code == status and words in page.text
    json_path = re.sub(r"(/diff|/report/5|/2026-13)", r"\1.json", path.format(month=landed.month), count=1)
    answer = client.get(json_path)
    assert answer.status_code == status and words in answer.json()["error"]


def test_a_failed_expectations_check_shows_on_the_month_page_with_table_column_rule_and_rows(landed, client):
    requests = landed.home / "landing" / landed.month / "requests.parquet"
    table = landed.tables.requests.copy()
    table.loc[table.index[:3], "units"] = 0  # meets the landing contract's types, breaks the rule units > 0
    table.to_parquet(requests, index=False)
    prepare()
    instance = client.app.state.sources.instance()
    result = dg.materialize([a for a in monthly_assets if a.key.to_user_string() in ("landed_inputs", "validated_inputs")],
                            partition_key=landed.month, instance=instance, resources=defs.resources,
                            tags=ticket_tags("alice", "__ephemeral_asset_job__", landed.month), raise_on_error=False)
    assert not result.success
    validation = client.get(f"/month/{landed.month}.json").json()["inputs"]["validation"]
    assert (validation["passed"], validation["run_id"]) == (False, result.run_id)
    (failure,) = [f for f in validation["failures"] if f["column"] == "units"]
    assert (failure["table"], failure["count"], len(failure["sample_rows"])) == ("requests", 3, 3)
    page = client.get(f"/month/{landed.month}").text
    assert f"<td>requests</td><td>units</td><td>{escape(failure['rule'])}</td><td class=\"n\">3</td>" in page


def test_a_new_version_shows_at_once_though_the_months_figures_are_kept_between_views(landed, client):
    assert client.get(f"/month/{landed.month}.json").json()["health"]["version"] == 2
    write_version(landed.home, landed.month, 3, landed.tables, moved=5, note="third")
    data = client.get(f"/month/{landed.month}.json").json()
    assert data["health"]["version"] == 3 and data["versions"][0]["note"] == "third"


def test_batch_admin_ui_hands_over_to_the_view_with_the_dagster_ui_beside_it(home, monkeypatch):
    handed: list[list[str]] = []
    monkeypatch.setattr(os, "execv", lambda program, args: handed.append(args))  # the process itself is replaced
    cli("ui", "--port", "3100", "--host", "127.0.0.1")
    (args,) = handed
    assert args[1:6] == ["-m", "batch_view", "--host", "127.0.0.1", "--port"] and args[6] == "3100"
    assert args[-1].endswith("workspace.yaml")
    assert dagster_command(Path(args[-1]), "127.0.0.1", 3101)[1:] == [
        "dev", "-w", args[-1], "-h", "127.0.0.1", "-p", "3101"]
    assert address("127.0.0.1", 3100) == "http://localhost:3100"


def test_a_new_home_shows_next_month_as_open_and_a_page_for_it(home, client):
    (row,) = client.get("/index.json").json()["months"]
    assert (row["upcoming"], row["phase"], row["latest_version"]) == (True, "open", None)
    assert client.get("/").status_code == 200
    month = client.get(f"/month/{row['month']}")
    assert month.status_code == 200 and "No versions yet" in month.text and "No inputs have landed" in month.text


def test_a_run_in_progress_shows_on_both_pages_and_the_month_polls_it(landed, client):
    assert 'hx-trigger="every 3s"' not in client.get(f"/month/{landed.month}").text
    ControlStore(Settings.from_env().control_url).acquire_lease(landed.month, "run-in-progress")
    run = client.get(f"/month/{landed.month}.json").json()["run"]
    assert (run["run_id"], run["alive"], run["dagster"]) == ("run-in-progress", True, f"{DAGSTER_URL}/runs/run-in-progress")
    page = client.get(f"/month/{landed.month}").text
    assert 'hx-trigger="every 3s"' in page and "Run in progress" in page
    row = next(m for m in client.get("/index.json").json()["months"] if m["month"] == landed.month)
    assert row["run"]["run_id"] == "run-in-progress"
    assert 'hx-trigger="every 5s"' in client.get("/").text and "run-in-" in client.get("/fragment/months").text
