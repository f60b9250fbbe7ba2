"""Charts are small PNGs; the report and the metadata sections tell a version's story in plain figures."""

from __future__ import annotations

import struct

import pandas as pd
import pytest

from batch import charts
from batch.metrics import planned_vs_actual, utilization_table, version_metrics
from batch.report import VersionView, audit_line, describe_action, leading_changes, render_html
from tests.batch.test_metrics import make_requests, make_resources, make_rows

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The Dagster UI renders Markdown metadata inline below 1,000 characters.
DAGSTER_INLINE_MARKDOWN = 1000


def png_size(png: bytes) -> tuple[int, int]:
    assert png.startswith(PNG_SIGNATURE)
    return struct.unpack(">II", png[16:24])


def a_view(**overrides) -> VersionView:
    rows, resources = make_rows(), make_resources()
    figures = {**version_metrics(rows, resources, make_requests()), "objective": 1537700.0, "bound": 1537731.0,
               "gap": 2e-5, "phase_seconds": {"landed_inputs": 0.31, "allocation_parts": 10.6},
               "solver_phase_seconds": {"compile": 0.12, "model_build": 0.4, "search": 9.7}}
    fields = dict(month="2025-03", version=2, final=False, phase="proposed",
                  manifest={"note": "pinned <b>R1</b>", "actor": "alice", "created_at": "2025-03-01T10:00:00+00:00"},
                  rows=rows, figures=figures, utilization=utilization_table(rows, resources, by="service_region"),
                  history=[{"month": "2025-01", "version": 1, "success_rate": 0.6, "utilization": 0.7},
                           {"month": "2025-02", "version": 3, "success_rate": 0.7, "utilization": 0.75}],
                  diff={"from": 1, "to": 2, "counts": {"added": 1, "removed": 0, "moved": 2, "unchanged": 3},
                        "moved": [{"request_id": "Q1", "from_resource": "R2", "to_resource": "R1"}],
                        "metrics": {"objective": {"from": 1.5e6, "to": 1537700.0, "change": 37700.0},
                                    "phase_seconds.landed_inputs": {"from": 0.2, "to": 0.3, "change": 0.1},
                                    "success_rate": {"from": 0.5, "to": 4 / 6, "change": 4 / 6 - 0.5}}},
                  audit=[{"at": pd.Timestamp("2025-03-01T10:00:00Z").to_pydatetime(), "actor": "alice",
                          "action": "adjust", "details": {"kind": "pin", "request_id": "Q3", "resource_id": "R2",
                                                          "note": "contract"}}],
                  links={"manifest": "/home/x/exports/allocations/month=2025-03/version=2/manifest.json"})
    fields.update(overrides)
    return VersionView(**fields)


def test_every_chart_is_a_png_under_100_kb():
    view = a_view(actuals=planned_vs_actual(make_rows(), make_resources(),
                                            pd.DataFrame({"resource_id": ["R1"], "request_id": ["Q1"],
                                                          "actual_units": [50]})))
    made = view.charts()

    assert [c.name for c in made] == ["utilization_heatmap", "unallocated_by_reason", "planned_vs_actual", "trend",
                                      "change_from_previous"]
    for chart in made:
        width, height = png_size(chart.png)
        assert len(chart.png) < charts.MAX_PNG_BYTES and width >= 300 and height >= 100, chart.name
        assert chart.markdown().startswith(f"![{chart.title}](data:image/png;base64,")


def test_charts_without_data_are_left_out():
    assert charts.utilization_heatmap(pd.DataFrame()) is None
    assert charts.reasons_bar({}) is None
    assert charts.trend_chart([{"month": "2025-03", "success_rate": 0.5}]) is None  # one month is no trend
    without_actuals = planned_vs_actual(make_rows(), make_resources(), None)
    assert charts.planned_vs_actual_chart(without_actuals) is None


def test_metadata_sections_are_short_enough_for_the_dagster_ui_to_show_them_inline():
    sections = a_view().markdown_sections()

    text = {name: body for name, body in sections.items() if not name.startswith("chart: ")}
    assert list(text) == ["summary", "why this version", "change from the previous version", "utilization by service",
                          "not allocated, by reason", "phase seconds", "solver phase seconds"]
    assert all(len(body) < DAGSTER_INLINE_MARKDOWN for body in text.values()), {k: len(v) for k, v in text.items()}
    assert "- Allocated (incl. pinned): **4**" in sections["summary"] and "- Gap: **0.002%**" in sections["summary"]
    assert "- capacity exhausted: **1**" in sections["not allocated, by reason"]
    assert "- compute: **80.0%** (120 of 150 units)" in sections["utilization by service"]
    assert "1,537,700" in sections["summary"] and "0.8340757" not in "".join(text.values())
    assert "- model build: 0.4 s" in sections["solver phase seconds"]


def test_the_report_is_self_contained_escaped_and_names_who_did_what():
    page = render_html(a_view())

    assert page.count("src='data:image/png;base64,") == 4  # heat map, reasons, trend, change
    assert "<b>R1</b>" not in page and "pinned &lt;b&gt;R1&lt;/b&gt;" in page
    assert "pinned Q3 to R2; note: contract" in page and "2025-03-01 10:00:00 UTC" in page
    assert "written 2025-03-01 10:00 UTC by alice" in page
    assert "http://" not in page and "https://" not in page  # nothing fetched from elsewhere


def test_a_diff_leads_with_objective_and_success_rate_and_keeps_timings_for_all():
    view = a_view()
    assert list(leading_changes(view.diff)) == ["objective", "success_rate"]
    assert "phase_seconds.landed_inputs" in leading_changes(view.diff, every=True)


@pytest.mark.parametrize(("action", "details", "text"), [
    ("run", {"version": 3, "note": "why"}, "version 3 written; note: why"),
    ("adjust", {"kind": "exclude", "request_id": "Q9", "note": ""}, "excluded Q9"),
    ("finalize", {"version": 2, "approver": "bob"}, "finalized version 2, approved by bob"),
    ("params", {"before": {}, "after": {"time_limit_s": 5}}, "set time_limit_s=5"),
])
def test_audit_entries_read_as_sentences(action, details, text):
    assert describe_action(action, details) == text


def test_an_audit_line_carries_its_time_zone():
    when, who, action, _ = audit_line({"at": "2025-03-01T10:00:00+00:00", "actor": None, "action": "alert",
                                       "details": {}}, tz=None)
    assert when.startswith("2025-03-01") and when.split()[-1] and who == "system"


def test_the_report_shows_the_units_the_requests_left_out_asked_for():
    rows = make_rows().assign(units=lambda r: r["units"].where(r["resource_id"].notna(), 0),
                              requested_units=make_rows()["units"])

    view = a_view(rows=rows)
    page = render_html(view)

    assert view.reason_table().set_index("reason")["requested units"].to_dict() == {
        "capacity exhausted": "500", "excluded": "10"}
    assert "<th>requested units</th>" in page and "<td class=n>500</td>" in page
