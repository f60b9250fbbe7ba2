"""Capacity advice in every place of a version: the proposal's Dagster metadata, the plan, the manifest and
Parquet beside the allocations, `status`, the report and the workbook."""

from __future__ import annotations

import json

import dagster as dg
import openpyxl
from click.testing import CliRunner

from assets.monthly import monthly_assets
from batch_cli.instance import prepare
from batch_cli.main import main
from pipelines.definitions import defs
from resources.advice_files import read_advice_files
from resources.control_store import ControlStore
from resources.settings import Settings
from resources.storage import ExportStore
from tests.assets.test_monthly_assets import MONTHS, land
from tests.signing import ticket_tags


def test_a_version_carries_its_capacity_advice_everywhere_it_is_shown(home, tmp_path):
    month = MONTHS[-1]
    land(month, requests=400)
    prepare()
    with dg.instance_for_test(temp_dir=str(home / "dagster")) as instance:
        result = dg.materialize(
            [a for a in monthly_assets if a.key.to_user_string() != "final_allocation"],
            partition_key=month, instance=instance, tags=ticket_tags("alice", "__ephemeral_asset_job__", month),
            resources=defs.resources,
        )
        assert result.success
        proposal = result.asset_materializations_for_node("allocation_proposal")[0].metadata
    # Shown inline as a Dagster table of the report's lines (issue 28 item 9), not folded Markdown.
    lines = [next(iter(record.data.values())) for record in proposal["capacity_advice"].value.records]
    assert any(str(line).startswith("one more unit on R") for line in lines), lines
    plan = ControlStore(Settings.from_env().control_url).latest_plan(month)["summary"]
    assert any(line.startswith("one more unit on R") for line in plan["capacity_advice"])

    exports = ExportStore(home)
    advice = exports.manifest(month, 1)["metrics"]["capacity_advice"]
    assert advice["available"] and 1 <= len(advice["top"]) <= 10
    best = advice["top"][0]
    assert best["sentence"].startswith(f"one more unit on {best['resource_id']} (")
    tables = read_advice_files(exports.version_path(month, 1))
    assert len(tables["resources"]) == 25 and len(tables["groups"]) >= 1  # every resource, every group
    assert tables["resources"].set_index("resource_id").loc[best["resource_id"], "rank"] == 1
    assert exports.verify(month, 1)  # the advice sits outside the version's checksums

    status = json.loads(CliRunner().invoke(main, ["status", month, "--json"], catch_exceptions=False).stdout)
    assert status["capacity_advice"]["top"][0]["resource_id"] == best["resource_id"]
    text = CliRunner().invoke(main, ["status", month], catch_exceptions=False).stdout
    assert "Capacity advice" in text and best["resource_id"] in text

    report = exports.report_path(month, 1).read_text(encoding="utf-8")
    assert "Where more capacity would serve most" in report and best["resource_id"] in report

    out = tmp_path / "month.xlsx"
    exported = CliRunner().invoke(main, ["export", month, "--format", "xlsx", "--out", str(out), "--actor", "alice"],
                                  catch_exceptions=False)
    assert exported.exit_code == 0, exported.output + exported.stderr
    sheet = openpyxl.load_workbook(out, read_only=True)["capacity_advice"]
    assert best["resource_id"] in [row[0] for row in sheet.iter_rows(values_only=True)]
