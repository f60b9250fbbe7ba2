"""A version's figures and its landing's summary are computed once, when the run writes the version, and read
by the admin view and `status` from then on: in a new process a month page reads no landed table and no row."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from batch import health, inputs
from batch.health import keep_figures, landed_tables, planned_figures, planned_rows, version_figures
from batch.landing import landed_fingerprint
from batch_view import month_reads
from batch_view.memo import Memo
from batch_view.sources import Sources
from resources.control_store import ControlStore
from resources.settings import Settings
from resources.storage import ExportStore


def reads_of(monkeypatch) -> list[str]:
    """Months whose landed tables are read as tables from now on."""
    reads: list[str] = []
    real = inputs.load_landing
    monkeypatch.setattr(inputs, "load_landing", lambda home, month: reads.append(month) or real(home, month))
    return reads


def test_the_runs_export_step_keeps_what_the_month_page_reads_first(materialized_month, monkeypatch):
    month, home = materialized_month.month, materialized_month.home
    kept = sorted(path.relative_to(home / "cache").parts[0] for path in (home / "cache").rglob("*.json"))
    assert kept == ["figures", "landing"]

    reads = reads_of(monkeypatch)
    monkeypatch.setattr(ExportStore, "read_version", lambda *args: pytest.fail("a version's rows were read"))
    src = Sources.open(Settings.from_env(), "http://localhost:3001")
    page = month_reads.month_health(src, Memo(), month)  # as in a view that has just started
    assert reads == [] and page["version"] == 1 and page["metrics"]["requests"] == 400
    assert month_reads.landing_context(src, Memo(), month)["tables"][0]["rows"] > 0 and reads == []
    status = health.month_health(src.store, src.exports, month)  # what `batch-admin status` reads
    assert status == page and reads == []
    src.close()


def test_kept_figures_are_the_figures_computed_from_the_rows_and_landed_tables(materialized_month):
    month, home = materialized_month.month, materialized_month.home
    store, exports = ControlStore(Settings.from_env().control_url), ExportStore(home)
    computed = planned_figures(planned_rows(store, exports, month), landed_tables(home, month))
    kept = version_figures(exports, month, (1, False), landed_fingerprint(home, month),
                           lambda: pytest.fail("the kept figures were computed again"))
    assert kept == json.loads(json.dumps(computed))
    assert kept["figures"]["requests"] == 400 and kept["utilization_by_service_region"]
    store.dispose()


def test_changed_inputs_or_a_damaged_kept_file_are_computed_again_never_read_stale(materialized_month, monkeypatch):
    month, home = materialized_month.month, materialized_month.home
    exports = ExportStore(home)
    figures = next((home / "cache" / "figures" / month).glob("*.json"))
    figures.write_text("{not json")
    reads = reads_of(monkeypatch)
    keep_figures(exports, month, (1, False))
    assert reads == [month] and json.loads(figures.read_text())["figures"]["requests"] == 400

    requests = home / "landing" / month / "requests.parquet"
    frame = pd.read_parquet(requests)
    frame.iloc[:-10].to_parquet(requests, index=False)  # ten requests fewer: another fingerprint
    store = ControlStore(Settings.from_env().control_url)
    found = health.month_health(store, exports, month)
    assert reads == [month, month]  # read once for the summary and the figures of the new files
    assert len(list((home / "cache" / "figures" / month).glob("*.json"))) == 2
    fresh = planned_figures(planned_rows(store, exports, month), landed_tables(home, month))
    assert found["utilization_by_service_region"] == json.loads(json.dumps(fresh["utilization_by_service_region"]))
    summary = health.kept_landing(exports, month, landed_fingerprint(home, month), lambda: pytest.fail("read again"))
    assert {table["table"]: table["rows"] for table in summary["tables"]}["requests"] == len(frame) - 10
    store.dispose()


def test_a_kept_results_key_cannot_leave_the_cache_folder(home):
    exports = ExportStore(home)
    for key in ("../control", "figures/../../x", "figures//x", ".hidden/x", "figures/a b"):
        with pytest.raises(ValueError, match="key"):
            exports.kept(key, dict)
    assert not (home / "cache").exists() and not (home / "control.json").exists()
