"""Tables as Dagster table metadata, which the UI shows inline (Markdown over 1,000 characters it folds away)."""

from __future__ import annotations

import math
from typing import Any

import dagster as dg
import pandas as pd

# Rows a table shows in the UI; a longer one says how many more there are in its last row.
MAX_ROWS = 50


def _cell(value: Any) -> str | int | float | bool | None:
    """A value a TableRecord takes: numpy scalars as Python ones, NaN and NA as None, the rest as text."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value is pd.NaT:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    return str(value)


def _kind(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_integer_dtype(series):
        return "int"
    if pd.api.types.is_float_dtype(series):
        return "float"
    return "string"


def table_metadata(frame: pd.DataFrame, max_rows: int = MAX_ROWS) -> dg.TableMetadataValue:
    """The first `max_rows` rows of a frame, typed columns, and a last row saying how many were left out."""
    shown = frame.head(max_rows)
    records = [dg.TableRecord({str(col): _cell(value) for col, value in zip(shown.columns, row)})
               for row in shown.itertuples(index=False)]
    if len(frame) > max_rows and len(frame.columns):
        first, *rest = (str(col) for col in frame.columns)
        records.append(dg.TableRecord({first: f"… and {len(frame) - max_rows:,} more", **dict.fromkeys(rest)}))
    kinds = {str(col): _kind(frame[col]) for col in frame.columns}
    if len(frame) > max_rows and len(frame.columns):
        kinds[str(frame.columns[0])] = "string"
    schema = dg.TableSchema(columns=[dg.TableColumn(name, kind) for name, kind in kinds.items()])
    return dg.MetadataValue.table(records, schema)
