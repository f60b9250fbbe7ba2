"""Loading a landing folder: typed tables, a stable fingerprint, nothing written, Data Docs on request."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from batch.inputs import InputError, load_landing
from checks.expectations import validate_inputs
from tests.batch.input_builders import MONTH, valid_rows, write_rows


def snapshot(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file and folder under folder with its mtime, size and bytes."""
    return {
        str(path.relative_to(folder)): (
            path.stat().st_mtime_ns, path.stat().st_size, path.read_bytes() if path.is_file() else b""
        )
        for path in sorted(folder.rglob("*"))
    }


@pytest.mark.parametrize("fmt,docs", [("csv", True), ("parquet", False)])
def test_loading_and_validating_never_write_into_the_landing_folder(tmp_path: Path, fmt: str, docs: bool) -> None:
    folder = write_rows(tmp_path, valid_rows(), fmt)
    before = snapshot(folder)
    tables = load_landing(tmp_path, MONTH)
    validate_inputs(tables, data_docs_dir=tmp_path / "docs" if docs else None)
    assert snapshot(folder) == before


def test_a_failed_load_writes_nothing_either(tmp_path: Path) -> None:
    rows = valid_rows()
    rows["requests"][0]["units"] = "many"
    folder = write_rows(tmp_path, rows)
    before = snapshot(tmp_path)
    with pytest.raises(InputError):
        load_landing(tmp_path, MONTH)
    assert snapshot(tmp_path) == before == snapshot(tmp_path)
    assert folder.exists()


def test_csv_and_parquet_landings_load_to_the_same_typed_tables(tmp_path: Path) -> None:
    write_rows(tmp_path / "csv", valid_rows(), "csv")
    write_rows(tmp_path / "parquet", valid_rows(), "parquet")
    from_csv = load_landing(tmp_path / "csv", MONTH)
    from_parquet = load_landing(tmp_path / "parquet", MONTH)
    for table, frame in from_csv.present().items():
        pd.testing.assert_frame_equal(frame, from_parquet.present()[table])
    requests = from_csv.requests
    assert str(requests["request_id"].dtype) == "str"
    assert requests["units"].dtype == "int64" and requests["priority"].dtype == "int64"
    assert requests["must_allocate"].tolist() == [True, False, False]
    assert requests["earliest_date"].dtype == "datetime64[ns]"
    assert requests["preferred_resource_id"].isna().tolist() == [False, True, True]
    assert str(from_csv.eligibility["units"].dtype) == "Int64"
    assert from_csv.eligibility["units"].isna().tolist() == [False, True]
    assert from_csv.availability["date"].dtype == "datetime64[ns]"


def test_the_fingerprint_follows_the_bytes_not_the_file_times(tmp_path: Path) -> None:
    folder = write_rows(tmp_path, valid_rows())
    first = load_landing(tmp_path, MONTH)
    (folder / "requests.csv").touch()
    assert load_landing(tmp_path, MONTH).fingerprint == first.fingerprint
    rows = valid_rows()
    rows["requests"][0]["units"] = "11"
    write_rows(tmp_path, rows)
    assert load_landing(tmp_path, MONTH).fingerprint != first.fingerprint
    assert set(first.files) == {"resources", "availability", "requests", "eligibility", "actuals"}
    assert first.files["requests"].endswith("landing/2026-12/requests.csv")


def test_optional_tables_may_be_absent_and_hidden_files_are_ignored(tmp_path: Path) -> None:
    rows = valid_rows()
    for table in ("availability", "eligibility", "actuals"):
        rows.pop(table)
    folder = write_rows(tmp_path, rows)
    (folder / ".requests.parquet.tmp").write_bytes(b"half written")
    (folder / "README.txt").write_text("notes")
    tables = load_landing(tmp_path, MONTH)
    assert tables.availability is None and tables.eligibility is None and tables.actuals is None
    assert validate_inputs(tables).success


def test_validation_builds_data_docs_and_plain_metadata(tmp_path: Path) -> None:
    rows = valid_rows()
    rows["requests"][1]["priority"] = "7"
    write_rows(tmp_path, rows)
    report = validate_inputs(load_landing(tmp_path, MONTH), data_docs_dir=tmp_path / "docs")
    assert report.data_docs_path and Path(report.data_docs_path).is_file()
    assert Path(report.data_docs_path).is_relative_to(tmp_path / "docs")
    metadata = json.loads(json.dumps(report.as_metadata()))
    assert metadata["success"] is False
    assert metadata["failures"][0]["rule"] == "priority 1..5"
    assert metadata["failures"][0]["sample_rows"][0]["request_id"] == "Q2"
    assert metadata["checked_rules"] == report.checked_rules > 50


def test_a_csv_header_that_names_a_column_twice_is_refused_naming_table_and_column(tmp_path: Path) -> None:
    folder = write_rows(tmp_path, valid_rows())
    requests = folder / "requests.csv"
    lines = requests.read_text().splitlines()
    # A second `units` column: pandas would call it units.1 and keep the first silently.
    requests.write_text("\n".join([lines[0] + ",units", *(line + ",999" for line in lines[1:])]) + "\n")
    with pytest.raises(InputError) as error:
        load_landing(tmp_path, MONTH)
    assert error.value.table == "requests" and error.value.column == "units"
    assert error.value.rule == "unique column names"
    assert "names column units more than once" in str(error.value)


@pytest.mark.parametrize("month", ["2026-10\n", "２０２６-10", "2026-1", " 2026-10", "2026-10 "])
def test_month_keys_are_matched_in_full_with_ascii_digits(tmp_path: Path, month: str) -> None:
    with pytest.raises(InputError, match="not a month key"):
        load_landing(tmp_path, month)


def test_the_same_landing_read_again_is_the_same_tables_and_a_change_by_a_reader_stays_its_own(tmp_path: Path) -> None:
    """A run's export step reads its landing again in the process that read it first (a warm run worker): the
    tables come back equal, and what a reader changes in its tables never reaches the next reader."""
    folder = write_rows(tmp_path, valid_rows())
    first = load_landing(tmp_path, MONTH)
    expected = {name: frame.copy() for name, frame in first.present().items()}
    first.requests.loc[0, "units"] = 999
    first.files["requests"] = "elsewhere"
    again = load_landing(tmp_path, MONTH)
    for name, frame in expected.items():
        pd.testing.assert_frame_equal(again.table(name), frame)
    assert again.files["requests"].endswith("landing/2026-12/requests.csv")
    again.requests.loc[0, "units"] = 998
    pd.testing.assert_frame_equal(load_landing(tmp_path, MONTH).requests, expected["requests"])
    rows = valid_rows()
    rows["requests"][0]["units"] = "11"
    write_rows(tmp_path, rows)
    changed = load_landing(tmp_path, MONTH)
    assert changed.requests.loc[0, "units"] == 11 and changed.fingerprint != first.fingerprint
    assert folder.is_dir()
