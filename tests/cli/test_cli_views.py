"""The CLI's views of months: refusals of unknown ids, every month at a glance, diff, audit and the report."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from click.testing import CliRunner

from assets.partitions import monthly_partitions
from batch.inputs import load_landing
from batch.metrics import relative_gap, utilization_records, version_metrics
from batch_cli.main import main
from resources.control_store import ControlStore
from resources.settings import Settings
from resources.storage import ExportStore

MONTH = monthly_partitions.get_partition_keys()[-1]  # next month
EARLIER = monthly_partitions.get_partition_keys()[-2]


def cli(*args: str, ok: bool = True):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == (0 if ok else 1), result.output + result.stderr
    return result


@pytest.fixture
def landed(home):
    cli("demo-data", MONTH, "--requests", "300", "--resources", "30", "--seed", "5")
    return load_landing(home, MONTH)


def write_version(home, month: str, version: int, tables, moved: int = 0, note: str | None = None,
                  solver_extra: dict | None = None) -> pd.DataFrame:
    """A version as allocation_export writes one (rows, manifest, control-store row), without a solve:
    each request on the first resource of its service and region; `moved` requests on the second."""
    resources = tables.resources.assign(capacity=tables.resources["capacity_units"])
    first = resources.groupby(["service", "region"])["resource_id"].agg(list)
    rows = tables.requests[["request_id", "customer_id", "service", "region", "priority", "units"]].copy()
    rows["resource_id"] = [first[(s, r)][1 if i < moved and len(first[(s, r)]) > 1 else 0]
                           for i, (s, r) in enumerate(zip(rows["service"], rows["region"]))]
    rows.loc[rows.index[-20:], "resource_id"] = None  # some left out for lack of capacity
    left_out = rows["resource_id"].isna()
    rows["status"] = left_out.map({True: "unallocated", False: "allocated"})
    rows["reason"] = left_out.map({True: "capacity_exhausted", False: None})
    rows["requested_units"] = rows["units"]
    rows["units"] = rows["units"].where(rows["resource_id"].notna(), 0)
    rows["cost"] = 0
    rows.insert(0, "month", month)
    rows.insert(1, "version", version)
    metrics = version_metrics(rows, resources, tables.requests)
    metrics["utilization_by_service_region"] = utilization_records(rows, resources)
    objective, bound = 1000.0 * version, 1000.0 * version + 1
    solver = {"status": "FEASIBLE", "objective": objective, "bound": bound, "gap": relative_gap(objective, bound),
              **(solver_extra or {})}
    info = ExportStore(home).write_version(month, version, rows, {
        "run_id": f"run-{version}", "actor": "alice", "note": note, "parameters": {}, "input_fingerprint": "x",
        "solver": solver, "metrics": metrics})
    ControlStore(Settings.from_env().control_url).record_version(
        month, version, "alice", note, f"run-{version}", str(info.path), {}, {**metrics, **solver}, "x")
    return rows


def test_a_pin_or_exclusion_naming_an_id_that_did_not_land_is_refused(landed):
    unknown_request = cli("adjust", MONTH, "--actor", "alice", "--pin", "R999999=RS0007", "--note", "x", ok=False)
    assert "Request R999999 is not among the 300 requests landed" in unknown_request.stderr

    request = landed.requests.iloc[0]
    unknown_resource = cli("adjust", MONTH, "--actor", "alice", "--pin", f"{request.request_id}=NOPE",
                           "--note", "x", ok=False)
    assert "Resource NOPE is not among the 30 resources landed" in unknown_resource.stderr

    elsewhere = landed.resources[(landed.resources["service"] != request.service)].iloc[0]
    wrong_service = cli("adjust", MONTH, "--actor", "alice", "--pin", f"{request.request_id}={elsewhere.resource_id}",
                        "--note", "x", ok=False)
    assert "may not use resource" in wrong_service.stderr

    assert "not among" in cli("adjust", MONTH, "--actor", "alice", "--exclude", "R999999", "--note", "x",
                              ok=False).stderr
    pins, exclusions = ControlStore(Settings.from_env().control_url).pins_and_exclusions(MONTH)
    assert pins == {} and exclusions == set()


def test_a_pin_to_a_resource_of_the_requests_service_and_region_is_recorded(landed):
    request = landed.requests.iloc[0]
    same = landed.resources[(landed.resources["service"] == request.service)
                            & (landed.resources["region"] == request.region)].iloc[0]

    cli("adjust", MONTH, "--actor", "alice", "--pin", f"{request.request_id}={same.resource_id}", "--note", "contract")

    pins, _ = ControlStore(Settings.from_env().control_url).pins_and_exclusions(MONTH)
    assert pins == {request.request_id: same.resource_id}


def test_status_without_a_month_shows_every_month_with_its_phase_versions_and_figures(home, landed):
    cli("params", EARLIER, "--actor", "alice", "--set", "time_limit_s=1")
    write_version(home, MONTH, 1, landed)

    lines = json.loads(cli("status", "--json").stdout)

    by_month = {line["month"]: line for line in lines}
    assert set(by_month) == {EARLIER, MONTH}
    assert by_month[EARLIER]["phase"] == "open" and by_month[EARLIER]["versions"] == 0
    assert by_month[MONTH]["phase"] == "proposed" and by_month[MONTH]["latest_version"] == 1
    assert by_month[MONTH]["allocated"] == 280 and by_month[MONTH]["requests"] == 300
    human = cli("status").stdout
    assert MONTH in human and EARLIER in human and "93.3%" in human


def test_status_of_a_month_says_why_each_solve_stopped_and_how_many_requests_moved(home, landed):
    write_version(home, MONTH, 1, landed, solver_extra={"stop_reason": "time_limit", "churn": None})
    write_version(home, MONTH, 2, landed, moved=30, note="move thirty", solver_extra={
        "stop_reason": "gap_tolerance", "churn": {"previous_allocated": 280, "requests_moved": 17}})

    versions = json.loads(cli("status", MONTH, "--json").stdout)["versions"]

    assert [v["stop_reason"] for v in versions] == ["time_limit", "gap_tolerance"]
    assert versions[1]["churn"]["requests_moved"] == 17
    rows = [line.split("│") for line in cli("status", MONTH).stdout.splitlines() if line.startswith("│")]
    assert [(r[10].strip(), r[11].strip()) for r in rows[:2]] == [("time limit", "–"), ("tolerance", "17")]


def test_params_unset_returns_a_key_to_its_default_and_the_audit_says_so(home, landed):
    cli("params", MONTH, "--actor", "alice", "--set", "stability=5", "--set", "seed=3")

    left = json.loads(cli("params", MONTH, "--actor", "alice", "--unset", "stability", "--json").stdout)["params"]

    assert left == {"seed": 3}
    assert "unset stability" in cli("audit", MONTH).stdout
    assert "Unknown parameter 'speed'" in cli("params", MONTH, "--actor", "alice", "--unset", "speed", ok=False).stderr
    assert "both set and unset" in cli("params", MONTH, "--actor", "alice", "--set", "seed=4", "--unset", "seed",
                                       ok=False).stderr
    assert "at least one --set" in cli("params", MONTH, "--actor", "alice", ok=False).stderr
    assert json.loads(cli("status", MONTH, "--json").stdout)["params"] == {"seed": 3}


def test_diff_leads_with_objective_gap_and_success_rate_and_names_the_moved_requests(home, landed):
    write_version(home, MONTH, 1, landed)
    rows = write_version(home, MONTH, 2, landed, moved=30, note="move thirty")

    text = cli("diff", MONTH, "--from", "1", "--to", "2").stdout

    table_lines = [line for line in text.splitlines() if "│" in line]
    assert [line.split("│")[1].strip() for line in table_lines[:3]] == ["objective", "gap", "success rate"]
    assert "1,000" in table_lines[0] and "2,000" in table_lines[0] and "+1,000" in table_lines[0]
    moved = json.loads(cli("diff", MONTH, "--from", "1", "--to", "2", "--json").stdout)["moved"]
    assert moved and moved[0]["request_id"] in text
    assert "phase_seconds" not in text and "--all" in text
    every = cli("diff", MONTH, "--from", "1", "--to", "2", "--all").stdout
    assert all(m["request_id"] in every for m in moved)
    assert len(rows) == 300


def test_audit_prints_readable_lines_with_a_time_zone(home, landed):
    request = landed.requests.iloc[1]
    cli("adjust", MONTH, "--actor", "alice", "--exclude", request.request_id, "--note", "customer cancelled")

    text = cli("audit", MONTH).stdout

    assert f"excluded {request.request_id}; note: customer cancelled" in text
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [A-Z+\-0-9]+", text)
    assert "{" not in text  # no JSON


def test_report_writes_a_self_contained_page_beside_the_manifest_or_where_asked(home, landed, tmp_path):
    write_version(home, MONTH, 1, landed)
    write_version(home, MONTH, 2, landed, moved=5, note="five moved")

    result = json.loads(cli("report", MONTH, "--json").stdout)

    store = ExportStore(home)
    assert result == {"month": MONTH, "version": 2, "final": False, "path": str(store.report_path(MONTH, 2))}
    page = store.report_path(MONTH, 2).read_text()
    assert page.count("<img src='data:image/png;base64,") >= 3  # utilization, reasons, change
    assert "five moved" in page and "93.3%" in page and "capacity exhausted" in page
    assert store.verify(MONTH, 2)  # the report sits outside the version's checksums
    other = tmp_path / "out" / "v1.html"
    cli("report", MONTH, "--version", "1", "--out", str(other))
    assert "version 1 (proposed)" in other.read_text() and not store.report_path(MONTH, 1).exists()
    assert "has no versions" in cli("report", EARLIER, ok=False).stderr


def test_help_lists_the_report_command_and_status_without_a_month():
    assert "report" in cli("--help").stdout
    assert "every month without one" in " ".join(cli("status", "--help").stdout.split())
