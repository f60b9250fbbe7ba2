"""What the view reads fast gives the CLI's answers: the months overview in two statements is the CLI's
overview, a month's health from kept figures is batch.health.month_health's, and the landed files are read
once per change of them."""

from __future__ import annotations

import pandas as pd

from batch import inputs
from batch.health import month_health, months_overview
from batch_view import month_reads
from batch_view.memo import Memo
from batch_view.sources import Sources
from resources.month_overview import month_lines
from resources.settings import Settings
from tests.cli.test_cli_views import cli, write_version

NEXT = "2026-10"


def sources() -> Sources:
    return Sources.open(Settings.from_env(), "http://localhost:3001")


def test_the_months_overview_in_two_statements_is_the_clis(landed):
    cli("demo-data", NEXT, "--requests", "120", "--resources", "12", "--seed", "3")
    cli("lock", landed.month, "--actor", "alice", "--admins", "alice", "--ttl", "1")
    cli("lock", NEXT, "--actor", "carol", "--admins", "carol", "--ttl", "1")  # a month with a row, no version
    src = sources()
    src.store.add_alert(landed.month, "rule_a", "error", "bad", {}, dedup_key="a")
    src.store.add_alert(landed.month, "rule_b", "info", "note", {}, dedup_key="b")
    src.store.add_alert(None, "rule_c", "error", "no month", {}, dedup_key="c")

    lines = month_lines(src.store, src.exports.months())
    assert [found.line for found in lines.values()] == months_overview(src.store, src.exports)
    line = lines[landed.month]
    assert (line.line["versions"], line.line["latest_version"], line.line["lock"]) == (2, 2, "alice")
    assert (line.line["alerts"], line.line["errors"]) == (2, 1)
    assert line.lock is not None and line.lock.to_dict() == src.store.lock_info(landed.month).to_dict()
    assert line.lease is None
    assert (lines[NEXT].line["versions"], lines[NEXT].line["latest_version"], lines[NEXT].line["lock"]) == (
        0, None, "carol")
    src.close()


def test_a_months_health_from_kept_figures_is_month_health_and_each_change_reads_the_files_once(landed, monkeypatch):
    src = sources()
    reads: list[str] = []
    real = inputs.load_landing
    monkeypatch.setattr(inputs, "load_landing", lambda home, month: reads.append(month) or real(home, month))
    memo = Memo()

    def both() -> tuple[dict, dict]:
        return month_reads.month_health(src, memo, landed.month), month_health(src.store, src.exports, landed.month)

    kept, direct = both()
    assert kept == direct and kept["version"] == 2 and kept["metrics"]["requests"] == 300
    assert month_reads.landing_context(src, memo, landed.month)["tables"][0]["rows"] > 0
    assert reads == [landed.month]  # the inputs section and the health share one read

    write_version(landed.home, landed.month, 3, landed.tables, moved=5, note="third")
    kept, direct = both()
    assert kept == direct and kept["version"] == 3 and reads == [landed.month]  # same files: not read again

    used = landed.versions[2].dropna(subset=["resource_id"])
    actuals = pd.DataFrame({"resource_id": used["resource_id"], "request_id": used["request_id"], "actual_units": 1})
    actuals.to_parquet(landed.home / "landing" / landed.month / "actuals.parquet", index=False)
    kept, direct = both()
    assert kept == direct and not kept["problems"] and reads == [landed.month] * 2  # new files: read once
    assert kept["planned_vs_actual"]["actuals_landed"]

    (landed.home / "landing" / landed.month / "requests.parquet").unlink()
    kept, direct = both()
    assert kept == direct and "requests" in kept["problems"][0]
    src.close()
