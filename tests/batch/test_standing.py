"""After an unlock and a new finalize, what people read of an old final says it was withdrawn (when, by which
approved unlock), which version is final now, and names the run that computed each version."""

from __future__ import annotations

import json

import openpyxl
import pytest

from assets.monthly import version_metadata
from batch.approvals import data_checksum
from batch.lifecycle import carry_out_finalize, carry_out_unlock
from batch.report import refresh_standing, standing_of, version_view
from pipelines.jobs import withdrawn_final_materialization
from resources.export_paths import MANIFEST_FILE
from resources.storage import ExportStore
from tests.resources.builders import allocation_rows, caller_manifest
from tests.signing import approve, file_finalize, file_unlock, open_store

MONTH = "2026-11"


@pytest.fixture
def month(tmp_path):
    """Versions 1..3 of MONTH (computed by run-1..run-3) in an export store and a SQLite control store."""
    store = open_store(f"sqlite:///{tmp_path / 'control.db'}")
    exports = ExportStore(tmp_path / "home")
    for version in (1, 2, 3):
        info = exports.write_version(MONTH, version, allocation_rows([("r1", "A"), ("r2", None)]),
                                     caller_manifest(run_id=f"run-{version}", metrics={"objective": 1000.0}))
        store.record_version(MONTH, version, "alice", None if version == 1 else "why", f"run-{version}",
                             str(info.path), {}, {"requests": 2}, "sha256:abc")
    yield store, exports
    store.dispose()


def finalize(store, exports, version: int, run_id: str) -> str:
    request = file_finalize(store, MONTH, version, checksum=data_checksum(exports.manifest(MONTH, version)))
    approve(store, request.id, "bob")
    carry_out_finalize(store, exports, request.id, MONTH, run_id)
    refresh_standing(store, exports, MONTH)
    return request.id


def unlock(store, exports, run_id: str) -> str:
    request = file_unlock(store, MONTH, reason="capacity of R1 was wrong")
    approve(store, request.id, "dana")
    carry_out_unlock(store, exports, request.id, MONTH, run_id)
    refresh_standing(store, exports, MONTH)
    return request.id


def test_a_superseded_final_says_it_was_withdrawn_and_which_version_is_final_now(month, tmp_path):
    store, exports = month
    finalize(store, exports, 2, "finalize-run-a")
    unlock_id = unlock(store, exports, "unlock-run")
    finalize(store, exports, 3, "finalize-run-b")

    report = exports.report_path(MONTH, 2).read_text()
    assert f"<title>{MONTH}, version 2 (withdrawn final)</title>" in report
    assert "version 3 is final now" in report
    assert "withdrawn " in report and f"by unlock request {unlock_id} of alice, approved by dana" in report
    assert "computed by run run-2" in report and "finalize-run-a" not in report.split("Standing")[0]

    manifest = json.loads((exports.version_path(MONTH, 2) / MANIFEST_FILE).read_text())
    standing = manifest["standing"]
    assert (standing["state"], standing["final_now"], standing["computed_by_run"]) == ("withdrawn final", 3, "run-2")
    assert standing["withdrawn"][0]["unlock_request"] == unlock_id
    assert standing["withdrawn"][0]["approved_by"] == "dana" and standing["withdrawn"][0]["withdrawn_at"]
    assert exports.verify(MONTH, 2)  # the standing is beside the data: checksums unchanged

    final = exports.final_manifest(MONTH)
    assert (final["version"], final["run_id"], final["finalize_run_id"]) == (3, "run-3", "finalize-run-b")
    assert [w["version"] for w in final["withdrawn_finals"]] == [2]
    assert "standing" not in final
    assert json.loads((exports.version_path(MONTH, 1) / MANIFEST_FILE).read_text())["standing"]["final_now"] == 3

    final_report = exports.report_path(MONTH, 3).read_text()
    assert f"<title>{MONTH}, version 3 (final)</title>" in final_report
    assert "computed by run run-3" in final_report and "(finalize run finalize-run-b)" in final_report


def test_the_workbook_of_a_withdrawn_final_says_so(month, tmp_path):
    store, exports = month
    finalize(store, exports, 2, "finalize-run-a")
    unlock_id = unlock(store, exports, "unlock-run")

    path = exports.export(MONTH, fmt="xlsx", out=tmp_path / "v2.xlsx", version=2,
                          standing=standing_of(store, exports, MONTH, version=2))["path"]

    summary = openpyxl.load_workbook(path)["summary"]
    assert summary["A1"].value == f"{MONTH}, version 2 (withdrawn final)"
    texts = [row[0] for row in summary.iter_rows(max_col=1, values_only=True) if row[0]]
    first = texts.index(next(t for t in texts if t.startswith("Version 2 is a withdrawn final")))
    standing = " ".join(texts[first:first + 3])  # the sentence, cut into lines that print
    assert "no version is final now" in standing and f"unlock request {unlock_id}" in standing
    details = {row[0]: row[1] for row in summary.iter_rows(max_col=2, values_only=True) if row[0]}
    assert details["run id"] == "run-2" and details["final version now"] == "none"


def test_the_dagster_metadata_marks_the_withdrawn_final(month):
    store, exports = month
    finalize(store, exports, 2, "finalize-run-a")
    unlock_id = unlock(store, exports, "unlock-run")

    event = withdrawn_final_materialization(store, MONTH, store.request(unlock_id))
    view_metadata = version_metadata(version_view(store, exports, MONTH, 2))

    assert event.partition == MONTH and event.asset_key.path == ["final_allocation"]
    assert event.metadata["status"].value == "withdrawn" and event.metadata["withdrawn version"].value == 2
    assert event.metadata["unlock request"].value == unlock_id and event.metadata["approved by"].value == "dana"
    assert "No version is final now" in event.metadata["standing"].value
    assert view_metadata["standing"].value.startswith("Version 2 is a withdrawn final: no version is final now.")
