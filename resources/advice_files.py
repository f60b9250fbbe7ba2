"""A version's capacity advice as Parquet, in `advice/` beside its allocations (docs/exports.md), and as a sheet.

The advice is a view of the version, like report.html: written once the version is complete, outside
its checksums, and in a sub-folder so that the documented glob `allocations/*/*/*.parquet` still
reads allocation rows only. This module imports nothing from Dagster.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from batch.advice import advice_frames
from batch.advice_text import ADVICE_KEY
from solvers.advice import CapacityAdvice

ADVICE_DIR = "advice"
RESOURCES_FILE = "resources.parquet"
GROUPS_FILE = "groups.parquet"
SHEET_NAME = "capacity_advice"

# The columns of solvers.advice (RESOURCE_ADVICE_COLUMNS, GROUP_ADVICE_COLUMNS), typed.
RESOURCE_ADVICE_SCHEMA = pa.schema([
    pa.field("resource_id", pa.string(), nullable=False), pa.field("name", pa.string()),
    pa.field("service", pa.string(), nullable=False), pa.field("region", pa.string(), nullable=False),
    pa.field("capacity", pa.int64(), nullable=False), pa.field("used_units", pa.int64(), nullable=False),
    pa.field("idle_units", pa.int64(), nullable=False), pa.field("shadow_price", pa.float64(), nullable=False),
    pa.field("holds_for_units", pa.int64(), nullable=False), pa.field("value_over_range", pa.float64(), nullable=False),
    pa.field("expected_gain", pa.float64(), nullable=False),
    pa.field("unallocated_requests", pa.int64(), nullable=False),
    pa.field("unallocated_value", pa.int64(), nullable=False), pa.field("rank", pa.int64(), nullable=False),
])
GROUP_ADVICE_SCHEMA = pa.schema([
    pa.field("service", pa.string(), nullable=False), pa.field("region", pa.string(), nullable=False),
    pa.field("resources", pa.int64(), nullable=False), pa.field("capacity", pa.int64(), nullable=False),
    pa.field("used_units", pa.int64(), nullable=False), pa.field("idle_units", pa.int64(), nullable=False),
    pa.field("shadow_price", pa.float64(), nullable=False), pa.field("best_resource_id", pa.string()),
    pa.field("holds_for_units", pa.int64(), nullable=False), pa.field("value_over_range", pa.float64(), nullable=False),
    pa.field("unallocated_requests", pa.int64(), nullable=False),
    pa.field("unallocated_value", pa.int64(), nullable=False),
])


def write_advice_files(version_dir: Path, advice: CapacityAdvice | None) -> Path | None:
    """Write `advice/` into a complete version's folder in one rename; None when there is no advice."""
    if advice is None:
        return None
    target = Path(version_dir) / ADVICE_DIR
    staging = Path(version_dir) / f".{ADVICE_DIR}.tmp-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        pq.write_table(pa.Table.from_pandas(advice.resources, schema=RESOURCE_ADVICE_SCHEMA, preserve_index=False),
                       staging / RESOURCES_FILE)
        pq.write_table(pa.Table.from_pandas(advice.groups, schema=GROUP_ADVICE_SCHEMA, preserve_index=False),
                       staging / GROUPS_FILE)
        os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def read_advice_files(version_dir: Path) -> dict[str, pd.DataFrame]:
    """The advice tables of a version ({} for a version written without advice)."""
    folder = Path(version_dir) / ADVICE_DIR
    if not folder.is_dir():
        return {}
    return {"resources": pq.read_table(folder / RESOURCES_FILE).to_pandas(),
            "groups": pq.read_table(folder / GROUPS_FILE).to_pandas()}


def advice_sheet(manifest: dict) -> dict[str, pd.DataFrame]:
    """The workbook's `capacity_advice` sheet: the top places (with their sentence), then the idle resources."""
    frames = advice_frames((manifest.get("metrics") or {}).get(ADVICE_KEY))
    if not frames:
        return {}
    idle = frames["idle"].assign(sentence="idle: nothing waiting can use these units")
    return {SHEET_NAME: pd.concat([frames["top"], idle], ignore_index=True)}
