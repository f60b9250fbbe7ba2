"""Load a month's landing folder into typed tables, or fail with one clear InputError (SPEC §2)."""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from batch import months
from batch.landing import EXTENSIONS, REQUIRED_TABLES, TABLES, fingerprint_files, landing_folder

# Contract columns per table, in order; the required ones must be present in the file.
COLUMNS: dict[str, list[str]] = {
    "resources": ["resource_id", "name", "service", "region", "capacity_units"],
    "availability": ["resource_id", "date", "available_units"],
    "requests": [
        "request_id", "customer_id", "service", "region", "units", "priority",
        "must_allocate", "preferred_resource_id", "earliest_date", "latest_date",
    ],
    "eligibility": ["request_id", "resource_id", "cost", "units"],
    "actuals": ["resource_id", "request_id", "actual_units"],
}
OPTIONAL_COLUMNS: dict[str, set[str]] = {
    "requests": {"must_allocate", "preferred_resource_id", "earliest_date", "latest_date"},
    "eligibility": {"units"},
}
TEXT_COLUMNS = {
    "resource_id", "name", "service", "region", "request_id", "customer_id", "preferred_resource_id",
}
INTEGER_COLUMNS = {"capacity_units", "available_units", "units", "priority", "cost", "actual_units"}
# Integer columns whose values may be missing (nullable Int64): eligibility.units defaults
# to the request's units.
NULLABLE_INTEGER = {("eligibility", "units")}
BOOLEAN_COLUMNS = {"must_allocate"}
DATE_COLUMNS = {"date", "earliest_date", "latest_date"}
# Columns that identify a row in error reports.
KEY_COLUMNS: dict[str, list[str]] = {
    "resources": ["resource_id"],
    "availability": ["resource_id", "date"],
    "requests": ["request_id"],
    "eligibility": ["request_id", "resource_id"],
    "actuals": ["request_id", "resource_id"],
}
TRUE_WORDS = {"true", "1", "yes"}
FALSE_WORDS = {"false", "0", "no"}
MAX_SAMPLE_ROWS = 10
INT64_LIMIT = 2**63


class InputError(Exception):
    """Bad input: str(e) is one clear sentence; the attributes say where and what."""

    def __init__(
        self,
        message: str,
        *,
        table: str | None = None,
        column: str | None = None,
        rule: str | None = None,
        count: int = 0,
        rows: list[dict[str, Any]] | None = None,
        details: str = "",
    ) -> None:
        super().__init__(message)
        self.table = table
        self.column = column
        self.rule = rule
        self.count = count
        self.rows = list(rows or [])[:MAX_SAMPLE_ROWS]
        self.details = details or message


@dataclass
class InputTables:
    """One month's landed input tables with contract dtypes, plus where they came from."""

    month: str
    resources: pd.DataFrame
    requests: pd.DataFrame
    availability: pd.DataFrame | None
    eligibility: pd.DataFrame | None
    actuals: pd.DataFrame | None
    fingerprint: str
    files: dict[str, str] = field(default_factory=dict)

    def table(self, name: str) -> pd.DataFrame | None:
        """The table called `name`, or None when it did not land."""
        return getattr(self, name)

    def present(self) -> dict[str, pd.DataFrame]:
        """The tables that landed, in contract order."""
        return {name: df for name in TABLES if (df := self.table(name)) is not None}


def check_month(month: str) -> None:
    """Raise InputError unless `month` reads YYYY-MM."""
    try:
        months.check_month(month)
    except months.MonthError:
        raise InputError(
            f"Month {month!r} is not a month key of the form YYYY-MM.", rule="month format"
        ) from None


def json_value(value: Any) -> Any:
    """A plain JSON-able version of one cell (None for missing, ISO text for dates)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat() if value == value.normalize() else value.isoformat()
    if isinstance(value, np.generic):
        return json_value(value.item())
    if isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def sample_rows(df: pd.DataFrame, index_labels: list[Any], limit: int = MAX_SAMPLE_ROWS) -> list[dict]:
    """The first `limit` rows with these index labels, as JSON-able dicts (helper columns dropped)."""
    labels = list(index_labels)[:limit]
    columns = [c for c in df.columns if not str(c).startswith("__")]
    rows = df.loc[labels, columns]
    return [{str(k): json_value(v) for k, v in row.items()} for row in rows.to_dict("records")]


def row_label(table: str, row: dict[str, Any]) -> str:
    """A short label for a row in messages: its key values, e.g. Q0012 or R0001 2026-12-03."""
    keys = [k for k in KEY_COLUMNS.get(table, []) if k in row]
    if not keys:
        return ", ".join(f"{k}={v}" for k, v in list(row.items())[:3])
    return " ".join("" if row[k] is None else str(row[k]) for k in keys)


def _offending(
    table: str, column: str, rule: str, df: pd.DataFrame, bad: pd.Series, source: str, what: str
) -> InputError:
    """An InputError for the rows of `df` where `bad` is true."""
    labels = list(df.index[bad.to_numpy()])
    rows = sample_rows(df, labels)
    first = ", ".join(f"{row_label(table, r)} ({r.get(column)!r})" for r in rows[:3])
    message = (
        f"Input table {table} column {column} has {len(labels)} value(s) that are not "
        f"{what} (rule '{rule}'; first: {first}) in {source}."
    )
    details = message + "\n" + "\n".join(f"  {r}" for r in rows)
    return InputError(
        message, table=table, column=column, rule=rule, count=len(labels), rows=rows, details=details
    )


def _is_missing_text(series: pd.Series) -> pd.Series:
    """Missing cells, counting empty or blank text as missing."""
    missing = series.isna()
    if series.dtype == object or pd.api.types.is_string_dtype(series.dtype):
        missing = missing | series.astype("str").str.strip().eq("")
    return missing.fillna(True).astype(bool)


def _to_text(series: pd.Series) -> pd.Series:
    """Ids and names as pandas str dtype, stripped; blanks become missing."""
    if pd.api.types.is_float_dtype(series.dtype):
        # Ids that went through a float column (1.0) read back as 1, not "1.0".
        integral = series.dropna()
        if (integral == np.floor(integral)).all():
            series = series.astype("Int64")
    missing = series.isna()
    text = series.astype("str").str.strip()
    text = text.mask(missing | text.eq(""))
    return text.astype("str")


def _parse_int(value: Any) -> int | None:
    """One cell as an exact int, or None when it is not a whole number within int64."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        number = int(value)
    else:
        text = str(value).strip()
        if re.fullmatch(r"[+-]?\d+", text):
            number = int(text)
        else:
            try:
                real = float(text)
            except ValueError:
                return None
            if not math.isfinite(real) or real != math.floor(real):
                return None
            number = int(real)
    return number if -INT64_LIMIT <= number < INT64_LIMIT else None


def _to_int(table: str, column: str, df: pd.DataFrame, source: str) -> pd.Series:
    """Integer column as int64 (Int64 where missing values are allowed), or InputError."""
    series = df[column]
    nullable = (table, column) in NULLABLE_INTEGER
    missing = _is_missing_text(series)
    if pd.api.types.is_integer_dtype(series.dtype) and series.dtype.kind != "u":
        values = series.astype("Int64")
        bad = pd.Series(False, index=series.index)
    elif pd.api.types.is_float_dtype(series.dtype):
        real = series.astype("float64")
        bad = ~missing & (~np.isfinite(real) | (real != np.floor(real)) | (real.abs() >= INT64_LIMIT))
        values = real.where(~bad & ~missing).astype("Int64")
    else:
        parsed = [None if gone else _parse_int(v) for v, gone in zip(series.tolist(), missing)]
        bad = ~missing & pd.Series([p is None for p in parsed], index=series.index)
        values = pd.Series([pd.NA if p is None else p for p in parsed], index=series.index, dtype="Int64")
    if bad.any():
        raise _offending(table, column, "integer", df, bad, source, "whole numbers")
    if missing.any() and not nullable:
        raise _offending(table, column, "not null", df, missing, source, "filled in (missing value)")
    return values if nullable else values.astype("int64")


def _to_bool(table: str, column: str, df: pd.DataFrame, source: str) -> pd.Series:
    """Boolean column: true/false/1/0/yes/no (any case); missing means false."""
    series = df[column]
    if pd.api.types.is_bool_dtype(series.dtype):
        return series.fillna(False).astype(bool)
    missing = _is_missing_text(series)
    words = series.astype("str").str.strip().str.lower()
    if pd.api.types.is_numeric_dtype(series.dtype):
        words = series.astype("float64").map(lambda v: "1" if v == 1 else "0" if v == 0 else str(v))
    truthy = words.isin(TRUE_WORDS)
    bad = ~missing & ~truthy & ~words.isin(FALSE_WORDS)
    if bad.any():
        raise _offending(table, column, "boolean", df, bad, source, "true/false/1/0/yes/no")
    return (truthy & ~missing).astype(bool)


def _to_date(table: str, column: str, df: pd.DataFrame, source: str, required: bool) -> pd.Series:
    """Date column as datetime64[ns]; missing is NaT (an error when the column is required)."""
    series = df[column]
    missing = _is_missing_text(series)
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        values = series
        if getattr(series.dt, "tz", None) is not None:
            values = series.dt.tz_convert(None)
        values = values.astype("datetime64[ns]")
        bad = pd.Series(False, index=series.index)
    else:
        text = series.mask(missing)
        if not pd.api.types.is_object_dtype(text.dtype):
            text = text.astype("str").str.strip().mask(missing)
        values = pd.to_datetime(text, errors="coerce", format="ISO8601")
        if getattr(values.dt, "tz", None) is not None:
            values = values.dt.tz_convert(None)
        values = values.astype("datetime64[ns]")
        bad = ~missing & values.isna()
    if bad.any():
        raise _offending(table, column, "date", df, bad, source, "dates (YYYY-MM-DD)")
    if required and missing.any():
        raise _offending(table, column, "not null", df, missing, source, "filled in (missing date)")
    return values


def _read(path: Path, table: str, source: str) -> pd.DataFrame:
    """Read one landed file without type guessing for CSV (everything as text)."""
    try:
        if path.suffix == ".csv":
            _check_unique_header(path, table, source)
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
        return pd.read_parquet(path)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure is an input problem
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(
            f"Input table {table} cannot be read from {source}: {reason}.",
            table=table, rule="readable",
        ) from exc


def _check_unique_header(path: Path, table: str, source: str) -> None:
    """Refuse a CSV header that names a column twice: pandas would rename the second (units.1)
    and the first would silently win."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        header = next(csv.reader(handle), [])
    names = [name.strip() for name in header]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise InputError(
            f"Input table {table} ({source}) names column {', '.join(twice)} more than once in its header; "
            f"each column must appear once.", table=table, column=twice[0], rule="unique column names",
        )


def normalize_table(table: str, raw: pd.DataFrame, source: str) -> pd.DataFrame:
    """Check required columns and convert `raw` to contract dtypes; extra columns are kept."""
    df = raw.copy()
    df.columns = [str(c).strip() for c in df.columns]
    duplicated = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
    if duplicated:
        raise InputError(
            f"Input table {table} has column '{duplicated[0]}' more than once ({source}).",
            table=table, column=duplicated[0], rule="unique column names",
        )
    df = df.reset_index(drop=True)
    optional = OPTIONAL_COLUMNS.get(table, set())
    for column in COLUMNS[table]:
        if column not in df.columns and column not in optional:
            raise InputError(
                f"Input table {table} is missing required column '{column}' ({source}).",
                table=table, column=column, rule="required column",
            )
    out = pd.DataFrame(index=df.index)
    for column in COLUMNS[table]:
        if column not in df.columns:
            out[column] = _default_column(table, column, len(df))
        elif column in TEXT_COLUMNS:
            out[column] = _to_text(df[column])
        elif column in INTEGER_COLUMNS:
            out[column] = _to_int(table, column, df, source)
        elif column in BOOLEAN_COLUMNS:
            out[column] = _to_bool(table, column, df, source)
        elif column in DATE_COLUMNS:
            out[column] = _to_date(table, column, df, source, required=column not in optional)
    for column in df.columns:
        if column not in out.columns:
            out[column] = df[column]
    return out


def _default_column(table: str, column: str, rows: int) -> pd.Series:
    """Value of an optional column that did not land."""
    if column in BOOLEAN_COLUMNS:
        return pd.Series(False, index=range(rows), dtype=bool)
    if column in DATE_COLUMNS:
        return pd.Series(pd.NaT, index=range(rows), dtype="datetime64[ns]")
    if column in INTEGER_COLUMNS:
        return pd.Series(pd.NA, index=range(rows), dtype="Int64")
    return pd.Series(np.nan, index=range(rows), dtype="str")


def landing_summary(tables: InputTables | InputError) -> dict[str, Any]:
    """JSON-able summary of a month's landing: each table with its rows and file, or why the landing breaks
    the contract (table, column, rule, count, rows)."""
    if isinstance(tables, InputError):
        return {"ok": False, "error": str(tables), "table": tables.table, "column": tables.column,
                "rule": tables.rule, "count": tables.count, "rows": tables.rows, "tables": []}
    return {"ok": True, "error": None, "fingerprint": tables.fingerprint,
            "tables": [{"table": name, "rows": len(frame), "file": tables.files.get(name)}
                       for name, frame in tables.present().items()]}


def _landed_files(home: Path, month: str) -> dict[str, Path]:
    """table -> landed file, checking folder, duplicates and unknown table files."""
    folder = landing_folder(home, month)
    where = f"landing/{month}"
    if not folder.is_dir():
        raise InputError(
            f"No inputs have landed for month {month}: folder {where} does not exist under {home}.",
            rule="landing folder",
        )
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix not in EXTENSIONS or not path.is_file():
            continue
        if path.stem not in TABLES:
            raise InputError(
                f"Landed file {where}/{path.name} is not a known input table "
                f"(expected one of {', '.join(TABLES)}).",
                table=path.stem, rule="known table",
            )
        found.setdefault(path.stem, []).append(path)
    for table, paths in found.items():
        if len(paths) > 1:
            names = " and ".join(f"{where}/{p.name}" for p in paths)
            raise InputError(
                f"Input table {table} landed twice ({names}); keep exactly one file per table.",
                table=table, rule="one file per table",
            )
    for table in REQUIRED_TABLES:
        if table not in found:
            raise InputError(
                f"Required input table {table} is missing: expected {where}/{table}.parquet "
                f"or {where}/{table}.csv.",
                table=table, rule="required table",
            )
    return {table: paths[0] for table, paths in found.items()}


def load_landing(home: Path, month: str) -> InputTables:
    """Read `<home>/landing/<month>/` into typed InputTables; raise InputError on bad input. The same landed
    files (by their fingerprint) read again in this process are a copy of the tables read last."""
    global _last_read
    check_month(month)
    files = _landed_files(home, month)
    fingerprint = fingerprint_files(list(files.values()))
    key = (str(Path(home).resolve()), month, fingerprint)
    if _last_read is not None and _last_read[0] == key:
        return _copy(_last_read[1])
    tables: dict[str, pd.DataFrame | None] = {}
    for table in TABLES:
        path = files.get(table)
        if path is None:
            tables[table] = None
            continue
        source = f"landing/{month}/{path.name}"
        tables[table] = normalize_table(table, _read(path, table, source), source)
    read = InputTables(
        month=month,
        resources=tables["resources"],
        requests=tables["requests"],
        availability=tables["availability"],
        eligibility=tables["eligibility"],
        actuals=tables["actuals"],
        fingerprint=fingerprint,
        files={table: str(path) for table, path in files.items()},
    )
    _last_read = (key, _copy(read))
    return read


# The landing this process read last: a run's export step reads its month's landing again for the figures it
# keeps (batch.health.keep_figures) in the warm run worker that read it in landed_inputs (0.1-0.15 s).
_last_read: tuple[tuple[str, str, str], InputTables] | None = None


def _copy(tables: InputTables) -> InputTables:
    """InputTables whose frames and files the caller may change without changing `tables`."""
    return replace(tables, files=dict(tables.files), **{name: frame.copy(deep=True)
                                                        for name, frame in tables.present().items()})
