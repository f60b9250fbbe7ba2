"""What the Dagster UI shows of a version without a click (issue 28 item 9): tables as tables, charts inline
through the admin view's copy of the same PNG, the figures of the report, and the version's state."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import pandas as pd
import pytest

from assets.monthly import advice_metadata, version_metadata
from batch.advice_text import ADVICE_KEY, advice_lines
from batch.standing import Standing, Withdrawal
from checks import names
from checks.asset_checks import rows_result
from resources.settings import ORIGIN_VAR, VIEW_URL_VAR
from tests.batch.test_charts_and_report import DAGSTER_INLINE_MARKDOWN, a_view

VIEW = "http://localhost:3310"


def test_the_reports_tables_are_dagster_tables_with_the_reports_rows():
    view = a_view()
    metadata = version_metadata(view, view_url="")

    reasons = metadata["not allocated, by reason"]
    assert isinstance(reasons, dg.TableMetadataValue)
    assert [r.data for r in reasons.records] == view.reason_table().to_dict("records")
    assert [c.name for c in reasons.schema.columns] == ["reason", "requests", "share of requests", "requested units",
                                                         "example"]
    places = metadata["utilization by service and region"]
    assert isinstance(places, dg.TableMetadataValue)
    assert [r.data for r in places.records] == view.service_table().to_dict("records")
    assert "- compute: **80.0%** (120 of 150 units)" in metadata["utilization by service"].value


@pytest.mark.parametrize("variable", [VIEW_URL_VAR, ORIGIN_VAR])  # set by `batch-admin ui`; by a deployment
def test_charts_are_inline_links_to_the_admin_views_same_png_when_its_address_is_known(monkeypatch, variable):
    view = a_view()
    monkeypatch.delenv(VIEW_URL_VAR, raising=False)
    monkeypatch.delenv(ORIGIN_VAR, raising=False)
    monkeypatch.setenv(variable, VIEW + "/")

    metadata = version_metadata(view)

    shown = {key: value for key, value in metadata.items() if key.startswith("chart: ")}
    assert [key.removeprefix("chart: ") for key in shown] == [chart.title for chart in view.charts()]
    for chart in view.charts():
        text = shown[f"chart: {chart.title}"].value
        assert isinstance(shown[f"chart: {chart.title}"], dg.MarkdownMetadataValue)
        assert text == (f"**{chart.title}**\n\n![{chart.title}]({VIEW}/month/{view.month}/chart/{view.version}/"
                        f"{chart.name}.png)")
        assert len(text) < DAGSTER_INLINE_MARKDOWN  # shown inline, not behind "Show Markdown"
    assert metadata["month page"].value.startswith(VIEW + "/month/")  # the same address as the links to the view


def test_without_an_admin_view_the_charts_stay_embedded(monkeypatch):
    monkeypatch.delenv(VIEW_URL_VAR, raising=False)
    monkeypatch.delenv(ORIGIN_VAR, raising=False)
    view = a_view()

    metadata = version_metadata(view)

    for chart in view.charts():
        assert metadata[f"chart: {chart.title}"].value == f"**{chart.title}**\n\n{chart.markdown()}"
        assert "data:image/png;base64," in metadata[f"chart: {chart.title}"].value


def test_the_headline_figures_are_the_reports_rounded_and_markdown_stays_short():
    view = a_view()
    metadata = version_metadata(view, view_url=VIEW)

    assert metadata["success_rate %"].value == round(100 * view.figures["success_rate"], 1)
    assert metadata["objective"].value == 1537700
    assert metadata["version"] == 2
    for key, value in metadata.items():
        if isinstance(value, dg.MarkdownMetadataValue):
            assert len(value.value) < DAGSTER_INLINE_MARKDOWN, key


def test_a_withdrawn_final_says_so_first_in_its_state_and_standing():
    at = datetime(2025, 3, 2, 9, 0, tzinfo=UTC)
    withdrawal = Withdrawal(version=2, finalized_at=at, finalize_request="F1", withdrawn_at=at, unlock_request="U1",
                            requested_by="alice", approved_by="bob", reason="late actuals")
    view = a_view(standing=Standing(month="2025-03", version=2, final_now=3, withdrawn=(withdrawal,),
                                    computed_by_run="run-2"))

    metadata = version_metadata(view, view_url="")

    assert metadata["state"].value == "withdrawn final"
    assert list(metadata)[3:5] == ["state", "standing"]  # right after row count, schema and version
    assert metadata["standing"].value.startswith("Version 2 is a withdrawn final: version 3 is final now.")
    assert "by unlock request U1 of alice, approved by bob: late actuals" in metadata["standing"].value


def test_row_checks_carry_the_number_allowed_beside_the_count_and_the_month():
    offending = pd.DataFrame({"request_id": ["Q1", "Q2"]})
    failed = rows_result(names.MUST_ALLOCATE_REQUESTS_SERVED, offending, "must_allocate requests unallocated", "2025-03")
    passed = rows_result(names.NO_INELIGIBLE_PAIR, offending.head(0), "allocations on ineligible pairs", "2025-03")

    for result, count in ((failed, 2), (passed, 0)):
        figures = {k: getattr(v, "value", v) for k, v in result.metadata.items() if k != "first_rows"}
        assert figures == {"month": "2025-03", "offending": count, "allowed": 0}
        assert result.description.startswith("2025-03: ")


def test_the_capacity_advice_is_an_inline_table_of_the_reports_lines():
    record = {"available": True, "top": [{"sentence": f"Repair North: one more unit serves {v} value, for {n} units"}
                                         for v, n in ((120, 4), (80, 2), (40, 9))],
              "groups": [{"service": "repair", "region": "north", "unallocated_requests": 12, "unallocated_value": 900}],
              "idle": [{"resource_id": "R7", "idle_units": 5, "capacity": 20}]}
    view = a_view(manifest={**a_view().manifest, "metrics": {ADVICE_KEY: record}})

    metadata = version_metadata(view, view_url="")

    advice = metadata["capacity advice"]
    assert isinstance(advice, dg.TableMetadataValue)
    assert [r.data["where more capacity serves most"] for r in advice.records] == advice_lines(record)
    assert advice.records[-1].data["where more capacity serves most"] == "idle: R7 (5 of 20 units)"
    assert advice_metadata([]).value == "no capacity advice (its LP was not solved)"
