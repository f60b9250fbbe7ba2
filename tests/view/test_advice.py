"""The month page's capacity advice: the plan's before a version exists, then the version's, read as written."""

from __future__ import annotations

from html import escape

import pytest

import solvers.advice
from batch.formats import format_count, format_figure
from resources.advice_files import read_advice_files
from resources.control_store import ControlStore
from resources.settings import Settings
from resources.storage import ExportStore
from tests.cli.test_cli_views import MONTH, cli


def _no_solve(*args, **kwargs):
    raise AssertionError("the page solved the advice's LP instead of reading what was written")


def test_the_month_page_shows_the_plans_advice_then_the_versions_top_places_and_idle_resources(home, client,
                                                                                            monkeypatch):
    cli("demo-data", MONTH, "--requests", "400", "--resources", "30", "--seed", "3")
    cli("params", MONTH, "--actor", "alice", "--set", "time_limit_s=2")
    cli("plan", MONTH, "--actor", "alice")
    store = ControlStore(Settings.from_env().control_url)
    planned = store.latest_plan(MONTH)["summary"]["capacity_advice"]
    assert planned and planned[0].startswith("one more unit on ")
    with monkeypatch.context() as patch:
        patch.setattr(solvers.advice, "_CapacityLp", _no_solve)
        before = client.get(f"/month/{MONTH}").text
        before_json = client.get(f"/month/{MONTH}.json").json()["advice"]
    assert before_json["source"] == "plan" and before_json["version"] is None
    assert before_json["lines"] == planned
    assert "no version yet" in before and all(escape(line) in before for line in planned)

    cli("run", MONTH, "--actor", "alice", "--note", "first")
    exports = ExportStore(home)
    record = exports.manifest(MONTH, 1)["metrics"]["capacity_advice"]
    tables = read_advice_files(exports.version_path(MONTH, 1))
    with monkeypatch.context() as patch:
        patch.setattr(solvers.advice, "_CapacityLp", _no_solve)
        page = client.get(f"/month/{MONTH}").text
        advice = client.get(f"/month/{MONTH}.json").json()["advice"]
    assert advice["source"] == "version" and advice["version"] == 1 and advice["available"]
    top, idle = advice["top"], advice["idle"]
    assert 1 <= len(top) <= 10 and top == record["top"] and idle == record["idle"]
    # The figures are the version's advice tables (advice/resources.parquet), ranked as written.
    resources = tables["resources"].set_index("resource_id")
    first = resources.loc[top[0]["resource_id"]]
    assert first["rank"] == resources.loc[[p["resource_id"] for p in top], "rank"].min()
    assert top[0]["shadow_price"] == pytest.approx(first["shadow_price"])
    assert top[0]["holds_for_units"] == first["holds_for_units"]
    # In a manager's words on the page: "one more unit on R.. (Service, Region) would serve about x value; ..."
    sentence = (f"one more unit on {top[0]['resource_id']} ({top[0]['service'].title()}, "
                f"{top[0]['region'].title()}) would serve about ")
    assert top[0]["sentence"].startswith(sentence) and advice["lines"][0] == top[0]["sentence"]
    assert "The capacity advice of version 1:" in page
    for place in top:
        assert escape(place["sentence"]) in page
    row = page.split(f"<td>{top[0]['resource_id']}</td>", 1)[1].split("</tr>", 1)[0]
    assert format_figure("shadow_price", top[0]["shadow_price"]) in row
    assert format_count(top[0]["holds_for_units"]) in row and format_count(top[0]["value_over_range"]) in row
    assert format_count(top[0]["expected_gain"]) in row
    assert idle, "the month should leave some capacity idle"
    spare = idle[0]
    assert spare["idle_units"] == resources.loc[spare["resource_id"], "idle_units"] > 0
    assert f"<td>{spare['resource_id']}</td>" in page.split("Idle: capacity nothing waiting can use", 1)[1]
    assert any(line.startswith("idle: ") and spare["resource_id"] in line for line in advice["lines"])
