"""Each bad landing is refused with an error naming its table, column and rule (SPEC §2)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from batch.inputs import InputError, load_landing
from checks.expectations import validate_inputs
from tests.batch.input_builders import MONTH, contract_error, valid_rows, write_rows


def set_value(table: str, row: int, column: str, value: str) -> Callable[[dict], None]:
    def mutate(rows: dict) -> None:
        rows[table][row][column] = value
    return mutate


def drop_column(table: str, column: str) -> Callable[[dict], None]:
    def mutate(rows: dict) -> None:
        for row in rows[table]:
            row.pop(column)
    return mutate


def drop_table(table: str) -> Callable[[dict], None]:
    def mutate(rows: dict) -> None:
        rows.pop(table)
    return mutate


def copy_row(table: str, row: int) -> Callable[[dict], None]:
    def mutate(rows: dict) -> None:
        rows[table].append(dict(rows[table][row]))
    return mutate


def keep_no_rows(table: str) -> Callable[[dict], None]:
    def mutate(rows: dict) -> None:
        rows[table] = []
    return mutate


def also_parquet(table: str) -> Callable[[Path], None]:
    def after(folder: Path) -> None:
        pd.read_csv(folder / f"{table}.csv", dtype=str).to_parquet(folder / f"{table}.parquet")
    return after


def extra_file(name: str, content: bytes = b"a,b\n1,2\n") -> Callable[[Path], None]:
    def after(folder: Path) -> None:
        (folder / name).write_bytes(content)
    return after


def corrupt_parquet(table: str) -> Callable[[Path], None]:
    def after(folder: Path) -> None:
        (folder / f"{table}.csv").unlink()
        (folder / f"{table}.parquet").write_bytes(b"not a parquet file")
    return after


@dataclass(frozen=True)
class BadInput:
    """One way to break the landing and the (table, column, rule) the error must name."""

    name: str
    table: str | None
    column: str | None
    rule: str
    mutate: Callable[[dict], None] | None = None
    after: Callable[[Path], None] | None = None


BIG = str(2**31)
CASES = [
    BadInput("missing requests table", "requests", None, "required table", drop_table("requests")),
    BadInput("missing resources table", "resources", None, "required table", drop_table("resources")),
    BadInput("requests without units column", "requests", "units", "required column", drop_column("requests", "units")),
    BadInput("requests without customer_id column", "requests", "customer_id", "required column",
             drop_column("requests", "customer_id")),
    BadInput("resources without capacity_units column", "resources", "capacity_units", "required column",
             drop_column("resources", "capacity_units")),
    BadInput("availability without date column", "availability", "date", "required column",
             drop_column("availability", "date")),
    BadInput("eligibility without cost column", "eligibility", "cost", "required column",
             drop_column("eligibility", "cost")),
    BadInput("requests landed as csv and parquet", "requests", None, "one file per table",
             after=also_parquet("requests")),
    BadInput("misspelled table file", "request", None, "known table", after=extra_file("request.csv")),
    BadInput("unreadable parquet", "requests", None, "readable", after=corrupt_parquet("requests")),
    BadInput("duplicate resource_id", "resources", "resource_id", "resource_id unique", copy_row("resources", 0)),
    BadInput("duplicate request_id", "requests", "request_id", "request_id unique", copy_row("requests", 1)),
    BadInput("negative units", "requests", "units", "units > 0", set_value("requests", 1, "units", "-4")),
    BadInput("zero units", "requests", "units", "units > 0", set_value("requests", 0, "units", "0")),
    BadInput("priority 0", "requests", "priority", "priority 1..5", set_value("requests", 0, "priority", "0")),
    BadInput("priority 6", "requests", "priority", "priority 1..5", set_value("requests", 2, "priority", "6")),
    BadInput("must_allocate maybe", "requests", "must_allocate", "boolean",
             set_value("requests", 1, "must_allocate", "maybe")),
    BadInput("must_allocate 2", "requests", "must_allocate", "boolean", set_value("requests", 1, "must_allocate", "2")),
    BadInput("fractional units", "requests", "units", "integer", set_value("requests", 1, "units", "1.5")),
    BadInput("units as words", "requests", "units", "integer", set_value("requests", 1, "units", "five")),
    BadInput("units beyond int64", "requests", "units", "integer",
             set_value("requests", 1, "units", "99999999999999999999")),
    BadInput("units too large for the solver", "requests", "units", "units <= 2147483647 (solver limit)",
             set_value("requests", 1, "units", BIG)),
    BadInput("missing units value", "requests", "units", "not null", set_value("requests", 1, "units", "")),
    BadInput("missing request_id value", "requests", "request_id", "request_id not null",
             set_value("requests", 1, "request_id", "")),
    BadInput("missing service value", "requests", "service", "service not null", set_value("requests", 1, "service", " ")),
    BadInput("no requests at all", "requests", None, "at least one row", keep_no_rows("requests")),
    BadInput("negative capacity", "resources", "capacity_units", "capacity_units >= 0",
             set_value("resources", 2, "capacity_units", "-1")),
    BadInput("capacity too large for the solver", "resources", "capacity_units",
             "capacity_units <= 2147483647 (solver limit)", set_value("resources", 2, "capacity_units", BIG)),
    BadInput("availability date next month", "availability", "date", f"date inside month {MONTH}",
             set_value("availability", 0, "date", "2027-01-01")),
    BadInput("availability date previous month", "availability", "date", f"date inside month {MONTH}",
             set_value("availability", 0, "date", "2026-11-30")),
    BadInput("availability date not a date", "availability", "date", "date",
             set_value("availability", 0, "date", "2026-13-45")),
    BadInput("availability missing date", "availability", "date", "not null", set_value("availability", 0, "date", "")),
    BadInput("negative availability", "availability", "available_units", "available_units >= 0",
             set_value("availability", 1, "available_units", "-2")),
    BadInput("availability of unknown resource", "availability", "resource_id", "resource_id exists in resources",
             set_value("availability", 1, "resource_id", "R404")),
    BadInput("availability twice for one day", "availability", "resource_id, date",
             "one row per resource_id and date", copy_row("availability", 0)),
    BadInput("earliest_date next month", "requests", "earliest_date", f"earliest_date inside month {MONTH}",
             set_value("requests", 0, "earliest_date", "2027-01-02")),
    BadInput("latest_date previous month", "requests", "latest_date", f"latest_date inside month {MONTH}",
             set_value("requests", 2, "latest_date", "2026-11-02")),
    BadInput("latest_date not a date", "requests", "latest_date", "date", set_value("requests", 2, "latest_date", "soon")),
    BadInput("inverted window", "requests", "earliest_date, latest_date", "earliest_date <= latest_date",
             set_value("requests", 0, "earliest_date", "2026-12-15")),
    BadInput("unknown preferred resource", "requests", "preferred_resource_id",
             "preferred_resource_id exists in resources", set_value("requests", 1, "preferred_resource_id", "R9")),
    BadInput("unknown service", "requests", "service", "service exists in resources",
             set_value("requests", 2, "service", "plumbing")),
    BadInput("eligibility of unknown request", "eligibility", "request_id", "request_id exists in requests",
             set_value("eligibility", 0, "request_id", "Q404")),
    BadInput("eligibility of unknown resource", "eligibility", "resource_id", "resource_id exists in resources",
             set_value("eligibility", 1, "resource_id", "R404")),
    BadInput("negative cost", "eligibility", "cost", "cost >= 0", set_value("eligibility", 0, "cost", "-1")),
    BadInput("cost too large for the solver", "eligibility", "cost", "cost <= 2147483647 (solver limit)",
             set_value("eligibility", 0, "cost", BIG)),
    BadInput("eligibility units 0", "eligibility", "units", "units > 0", set_value("eligibility", 0, "units", "0")),
    BadInput("eligibility pair twice", "eligibility", "request_id, resource_id",
             "one row per request_id and resource_id", copy_row("eligibility", 0)),
    BadInput("actuals of unknown request", "actuals", "request_id", "request_id exists in requests",
             set_value("actuals", 0, "request_id", "Q404")),
    BadInput("negative actual units", "actuals", "actual_units", "actual_units >= 0",
             set_value("actuals", 0, "actual_units", "-3")),
]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_the_valid_month_passes_the_contract(tmp_path: Path, fmt: str) -> None:
    write_rows(tmp_path, valid_rows(), fmt)
    assert contract_error(tmp_path) is None


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_bad_landing_is_refused_naming_table_column_and_rule(tmp_path: Path, case: BadInput) -> None:
    rows = valid_rows()
    if case.mutate:
        case.mutate(rows)
    folder = write_rows(tmp_path, rows)
    if case.after:
        case.after(folder)
    error = contract_error(tmp_path)
    assert error is not None, f"{case.name} was accepted"
    assert (error.table, error.column, error.rule) == (case.table, case.column, case.rule), str(error)
    assert str(error).endswith(".") and "\n" not in str(error)
    if case.table:
        assert case.table in str(error)


def test_a_missing_landing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="No inputs have landed for month 2026-12") as caught:
        load_landing(tmp_path, MONTH)
    assert caught.value.rule == "landing folder"


def test_a_malformed_month_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        load_landing(tmp_path, "2026-13")
    assert caught.value.rule == "month format"


def test_the_missing_column_message_names_table_column_and_file(tmp_path: Path) -> None:
    rows = valid_rows()
    drop_column("requests", "units")(rows)
    write_rows(tmp_path, rows)
    with pytest.raises(InputError) as caught:
        load_landing(tmp_path, MONTH)
    assert str(caught.value) == (
        "Input table requests is missing required column 'units' (landing/2026-12/requests.csv)."
    )


def test_a_conversion_error_lists_the_offending_rows(tmp_path: Path) -> None:
    rows = valid_rows()
    set_value("requests", 0, "units", "x")(rows)
    set_value("requests", 2, "units", "2.5")(rows)
    write_rows(tmp_path, rows)
    with pytest.raises(InputError) as caught:
        load_landing(tmp_path, MONTH)
    error = caught.value
    assert error.count == 2
    assert [row["request_id"] for row in error.rows] == ["Q1", "Q3"]
    assert "Q1" in str(error) and "requests.csv" in str(error)


def test_the_report_names_every_failure_and_the_first_one_in_one_sentence(tmp_path: Path) -> None:
    rows = valid_rows()
    for row in rows["requests"]:
        row["units"] = "0"
    set_value("requests", 1, "priority", "9")(rows)
    write_rows(tmp_path, rows)
    report = validate_inputs(load_landing(tmp_path, MONTH))
    assert not report.success
    assert [(f.rule, f.count) for f in report.failures] == [("units > 0", 3), ("priority 1..5", 1)]
    first_line = report.summary().splitlines()[0]
    assert first_line == (
        "Input table requests failed rule 'units > 0' on column units in 3 rows (first: Q1, Q2, Q3)."
    )
    assert [row["request_id"] for row in report.failures[0].sample_rows] == ["Q1", "Q2", "Q3"]
    with pytest.raises(InputError) as caught:
        report.raise_for_failures()
    assert caught.value.details == report.summary()
    assert caught.value.count == 3


@pytest.mark.parametrize("text,expected", [
    ("true", True), ("FALSE", False), ("1", True), ("0", False), ("Yes", True), ("no", False), ("", False),
])
def test_must_allocate_accepts_the_usual_spellings(tmp_path: Path, text: str, expected: bool) -> None:
    rows = valid_rows()
    set_value("requests", 0, "must_allocate", text)(rows)
    write_rows(tmp_path, rows)
    assert bool(load_landing(tmp_path, MONTH).requests["must_allocate"].iloc[0]) is expected


def test_must_allocate_defaults_to_false_when_the_column_is_absent(tmp_path: Path) -> None:
    rows = valid_rows()
    for column in ("must_allocate", "preferred_resource_id", "earliest_date", "latest_date"):
        drop_column("requests", column)(rows)
    write_rows(tmp_path, rows)
    tables = load_landing(tmp_path, MONTH)
    assert not tables.requests["must_allocate"].any()
    assert tables.requests["earliest_date"].isna().all()
    assert validate_inputs(tables).success
