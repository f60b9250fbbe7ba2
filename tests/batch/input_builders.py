"""Builders for landing folders: a tiny valid month as plain text tables, written as CSV or Parquet."""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd

from batch.inputs import InputError, load_landing
from checks.expectations import validate_inputs

MONTH = "2026-12"


def valid_rows() -> dict[str, list[dict]]:
    """A small month that meets every rule of the landing contract, as rows of text."""
    return copy.deepcopy({
        "resources": [
            {"resource_id": "R1", "name": "North consulting A", "service": "consulting", "region": "north", "capacity_units": "100"},
            {"resource_id": "R2", "name": "North consulting B", "service": "consulting", "region": "north", "capacity_units": "50"},
            {"resource_id": "R3", "name": "South repair", "service": "repair", "region": "south", "capacity_units": "80"},
        ],
        "availability": [
            {"resource_id": "R1", "date": "2026-12-01", "available_units": "5"},
            {"resource_id": "R1", "date": "2026-12-02", "available_units": "0"},
            {"resource_id": "R2", "date": "2026-12-31", "available_units": "3"},
        ],
        "requests": [
            {"request_id": "Q1", "customer_id": "C1", "service": "consulting", "region": "north", "units": "10",
             "priority": "1", "must_allocate": "true", "preferred_resource_id": "R1",
             "earliest_date": "2026-12-01", "latest_date": "2026-12-10"},
            {"request_id": "Q2", "customer_id": "C2", "service": "consulting", "region": "north", "units": "5",
             "priority": "3", "must_allocate": "false", "preferred_resource_id": "",
             "earliest_date": "", "latest_date": ""},
            {"request_id": "Q3", "customer_id": "C2", "service": "repair", "region": "south", "units": "7",
             "priority": "5", "must_allocate": "no", "preferred_resource_id": "",
             "earliest_date": "", "latest_date": "2026-12-20"},
        ],
        "eligibility": [
            {"request_id": "Q1", "resource_id": "R1", "cost": "0", "units": "10"},
            {"request_id": "Q2", "resource_id": "R2", "cost": "10", "units": ""},
        ],
        "actuals": [
            {"resource_id": "R1", "request_id": "Q1", "actual_units": "10"},
        ],
    })


def write_rows(home: Path, rows: dict[str, list[dict]], fmt: str = "csv", month: str = MONTH) -> Path:
    """Write each table of `rows` as text into `<home>/landing/<month>/<table>.<fmt>`."""
    folder = Path(home) / "landing" / month
    folder.mkdir(parents=True, exist_ok=True)
    for table, table_rows in rows.items():
        # A table without rows still lands with its header.
        header = list(table_rows[0]) if table_rows else list(valid_rows()[table][0])
        frame = pd.DataFrame(table_rows, columns=header)
        if fmt == "csv":
            frame.to_csv(folder / f"{table}.csv", index=False)
        else:
            frame.astype(object).to_parquet(folder / f"{table}.parquet", index=False)
    return folder


def contract_error(home: Path, month: str = MONTH) -> InputError | None:
    """The InputError the landing contract raises for this folder (load, then validate), or None."""
    try:
        report = validate_inputs(load_landing(home, month))
        report.raise_for_failures()
    except InputError as error:
        return error
    return None
