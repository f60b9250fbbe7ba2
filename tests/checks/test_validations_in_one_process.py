"""Validations that share a process (a warm run worker validates many months) each get their own result
and their own Data Docs: nothing of one reaches the next."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from batch.inputs import InputTables, load_landing
from checks import expectations
from checks.expectations import validate_inputs
from tests.batch.input_builders import MONTH, valid_rows, write_rows

LINK = re.compile(r"'_table_row_link_path': '([^']+)'")
STATUS = re.compile(r"'_validation_success_text': '(\w+)'")


def landing(home: Path, bad: bool) -> InputTables:
    rows = valid_rows()
    if bad:
        rows["requests"][1]["priority"] = "7"
        rows["availability"][0]["available_units"] = "-1"
    write_rows(home, rows)
    return load_landing(home, MONTH)


def report_of(tables: InputTables, docs: Path | None = None) -> dict:
    """The report as metadata, without the docs path (which names the folder)."""
    metadata = validate_inputs(tables, data_docs_dir=docs).as_metadata()
    return {key: value for key, value in metadata.items() if key != "data_docs_path"}


def site(docs: Path) -> tuple[dict[str, str], set[str]]:
    """The index's validation links with their status, and the validation pages on disk."""
    root = docs / "gx" / "uncommitted" / "data_docs" / "local_site"
    index = (root / "index.html").read_text()
    listed = dict(zip(LINK.findall(index), STATUS.findall(index), strict=True))
    pages = {str(page.relative_to(root)) for page in (root / "validations").rglob("*.html")}
    return listed, pages


def statuses(listed: dict[str, str]) -> dict[str, str]:
    """Status per table (the suite's name in the page path: validations/inputs/<table>/...)."""
    return {path.split("/")[2]: status for path, status in listed.items()}


@pytest.fixture
def alone(monkeypatch, tmp_path):
    """The report of a validation in a process that validated nothing before (a new engine)."""
    def report(tables: InputTables) -> dict:
        with monkeypatch.context() as patch:
            patch.setattr(expectations, "_engine", None)
            return report_of(tables, tmp_path / "alone")
    return report


ALL_PASS = {"resources": "Success", "availability": "Success", "requests": "Success",
            "eligibility": "Success", "actuals": "Success"}
TWO_FAIL = {**ALL_PASS, "availability": "Failed", "requests": "Failed"}


@pytest.mark.parametrize("order", [("bad", "good"), ("good", "bad")])
def test_each_validation_in_a_process_has_its_own_report_and_pages(tmp_path: Path, alone, order) -> None:
    tables = {kind: landing(tmp_path / kind, kind == "bad") for kind in ("bad", "good")}
    expected = {kind: alone(tables[kind]) for kind in tables}
    assert expected["good"]["success"] and not expected["bad"]["success"]
    assert [f["rule"] for f in expected["bad"]["failures"]] == ["available_units >= 0", "priority 1..5"]

    for kind in order:
        assert report_of(tables[kind], tmp_path / "docs" / kind) == expected[kind]

    for kind, status in (("good", ALL_PASS), ("bad", TWO_FAIL)):
        listed, pages = site(tmp_path / "docs" / kind)
        assert statuses(listed) == status
        assert set(listed) == pages  # every page listed is on disk, and no other


def test_a_month_validated_again_into_its_folder_shows_only_the_last_validation(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    bad, good = landing(tmp_path / "bad", True), landing(tmp_path / "good", False)
    assert not validate_inputs(bad, data_docs_dir=docs).success
    first, _ = site(docs)
    assert statuses(first) == TWO_FAIL

    assert validate_inputs(good, data_docs_dir=docs).success
    listed, pages = site(docs)
    assert statuses(listed) == ALL_PASS and set(listed) == pages
    assert not set(listed) & set(first)


def test_a_validation_without_docs_leaves_the_last_pages_alone(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    good, bad = landing(tmp_path / "good", False), landing(tmp_path / "bad", True)
    validate_inputs(good, data_docs_dir=docs)
    before = {path: path.read_bytes() for path in docs.rglob("*") if path.is_file()}

    report = validate_inputs(bad)

    assert report.data_docs_path is None and not report.success
    assert {path: path.read_bytes() for path in docs.rglob("*") if path.is_file()} == before
