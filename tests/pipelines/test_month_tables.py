"""A run writes each table of its month once: a later step that hands a table on unchanged (validated inputs,
the capacity plan's instance, the proposal) links the file written first (resources/table_codec.py)."""

from __future__ import annotations

import hashlib
from collections import defaultdict


def test_a_run_writes_each_table_of_its_month_once(_materialized_template):
    io = _materialized_template.home / "dagster" / "io"
    files = sorted(io.rglob("*.parquet"))
    written: dict[str, set[tuple[int, int]]] = defaultdict(set)  # content -> the files (inodes) holding it
    for path in files:
        written[hashlib.sha256(path.read_bytes()).hexdigest()].add((path.stat().st_dev, path.stat().st_ino))

    assert len(files) > len(written)  # some tables are handed on...
    assert {content: inodes for content, inodes in written.items() if len(inodes) > 1} == {}  # ...none written twice
    month = _materialized_template.month
    requests = {step: (io / step / month / name).stat().st_ino for step, name in (
        ("landed_inputs", "001_requests.parquet"), ("validated_inputs", "001_requests.parquet"),
        ("capacity_plan", "000_instance.requests.parquet"), ("allocation_parts", "000_instance.requests.parquet"),
        ("allocation_proposal", "000_instance.requests.parquet"))}
    assert requests["landed_inputs"] == requests["validated_inputs"]
    assert requests["capacity_plan"] == requests["allocation_parts"] == requests["allocation_proposal"]
