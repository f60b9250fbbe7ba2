"""The allocation row contract of every version (SPEC §6): its Arrow schema, the checks on rows written, reading.

This module imports nothing from Dagster.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from resources.export_paths import ExportError
from solvers.schema import STATUS_ALLOCATED, STATUS_EXCLUDED, STATUS_PINNED, STATUS_UNALLOCATED

# 2: requested_units beside units (issue 28); files of schema 1 read with requested_units null.
SCHEMA_VERSION = 2

ALLOCATION_SCHEMA = pa.schema(
    [
        pa.field("month", pa.string(), nullable=False),
        pa.field("version", pa.int32(), nullable=False),
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("customer_id", pa.string(), nullable=False),
        pa.field("service", pa.string(), nullable=False),
        pa.field("region", pa.string(), nullable=False),
        pa.field("priority", pa.int16(), nullable=False),
        pa.field("resource_id", pa.string(), nullable=True),
        pa.field("units", pa.int64(), nullable=False),
        # What the request asked for, so an unallocated row (units 0) still shows it; null only in schema-1 files.
        pa.field("requested_units", pa.int64(), nullable=True),
        pa.field("cost", pa.int64(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=True),
        # Why, specifically: which constraint and which resources were full (issue 6 §5).
        pa.field("reason_detail", pa.string(), nullable=True),
    ],
    metadata={"batch_admin.schema_version": str(SCHEMA_VERSION)},
)
ALLOCATION_COLUMNS = ALLOCATION_SCHEMA.names

# Nullable in the schema (older files lack them) but required of every row written now.
WRITE_REQUIRED = frozenset({"requested_units"})

STATUSES = (STATUS_ALLOCATED, STATUS_UNALLOCATED, STATUS_PINNED, STATUS_EXCLUDED)
STATUSES_WITH_RESOURCE = (STATUS_ALLOCATED, STATUS_PINNED)


def allocation_table(rows: pd.DataFrame, month: str, version: int) -> pa.Table:
    """Check the caller's rows against the row contract and type them as ALLOCATION_SCHEMA."""
    if not isinstance(rows, pd.DataFrame):
        raise ExportError("Allocation rows must be a pandas DataFrame.")
    rows = rows.copy()
    for name, value in (("month", month), ("version", version)):
        if name in rows.columns and len(rows) and not (rows[name].astype(str) == str(value)).all():
            raise ExportError(f"Column {name!r} of the rows disagrees with the {name} being written ({value}).")
        rows[name] = value
    if "reason_detail" not in rows.columns:
        rows["reason_detail"] = None
    missing = [c for c in ALLOCATION_COLUMNS if c not in rows.columns]
    extra = [c for c in rows.columns if c not in ALLOCATION_COLUMNS]
    if missing or extra:
        raise ExportError(f"Allocation rows must have exactly the SPEC §6 columns; missing {missing}, unexpected {extra}.")
    rows = rows[ALLOCATION_COLUMNS]
    for field in ALLOCATION_SCHEMA:
        if (not field.nullable or field.name in WRITE_REQUIRED) and rows[field.name].isna().any():
            count = int(rows[field.name].isna().sum())
            raise ExportError(f"Column {field.name!r} has {count} empty values but is required.")
    bad_status = sorted(set(rows["status"].astype(str)) - set(STATUSES))
    if bad_status:
        raise ExportError(f"Unknown status values {bad_status}; expected {', '.join(STATUSES)}.")
    has_resource = rows["resource_id"].notna()
    needs_resource = rows["status"].isin(STATUSES_WITH_RESOURCE)
    if (has_resource != needs_resource).any():
        bad = rows.loc[has_resource != needs_resource, "request_id"].head(5).tolist()
        raise ExportError(f"Rows must name a resource exactly when allocated or pinned; offending requests {bad}.")
    if rows.loc[~needs_resource, "reason"].isna().any():
        bad = rows.loc[~needs_resource & rows["reason"].isna(), "request_id"].head(5).tolist()
        raise ExportError(f"Every unallocated or excluded row needs a reason; offending requests {bad}.")
    if rows["request_id"].duplicated().any():
        bad = rows.loc[rows["request_id"].duplicated(), "request_id"].head(5).tolist()
        raise ExportError(f"Request ids must be unique in a version; duplicated {bad}.")
    rows = rows.sort_values("request_id", kind="stable").reset_index(drop=True)
    arrays = []
    for field in ALLOCATION_SCHEMA:
        column = rows[field.name]
        try:
            if pa.types.is_string(field.type):
                arrays.append(pa.array(column.astype("string"), type=field.type, from_pandas=True))
            else:
                arrays.append(pa.array(column, from_pandas=True).cast(field.type, safe=True))
        except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError, TypeError) as exc:
            raise ExportError(f"Column {field.name!r} cannot be stored as {field.type}: {exc}.") from None
    return pa.Table.from_arrays(arrays, schema=ALLOCATION_SCHEMA)


def read_rows(path: Path) -> pd.DataFrame:
    """Rows of one data file as a DataFrame typed by ALLOCATION_SCHEMA."""
    # hive partitioning is off: month and version come from the file itself.
    return current_schema(pq.read_table(path, partitioning=None)).to_pandas()


def current_schema(table: pa.Table) -> pa.Table:
    """A table of any schema version as ALLOCATION_SCHEMA: columns an older version lacks are null."""
    for field in ALLOCATION_SCHEMA:
        if field.name not in table.column_names:
            table = table.append_column(field, pa.nulls(table.num_rows, field.type))
    return table.select(ALLOCATION_COLUMNS).cast(ALLOCATION_SCHEMA)
