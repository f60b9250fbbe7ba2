"""The filters of a file export: which values are known, which are refused, and the filter in words."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from batch.health import landed_tables

# Filter name -> the allocation column it matches, in the order people name them.
FILTER_COLUMNS = {"service": "service", "region": "region", "resource": "resource_id", "status": "status"}
# How many known values a refusal lists before it says how many more there are.
LISTED_VALUES = 30


@dataclass(frozen=True)
class Filters:
    """The filters of one export (None: not filtered by that column)."""

    values: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, **given: str | None) -> Filters:
        return cls({name: value for name in FILTER_COLUMNS if (value := given.get(name)) is not None})

    def __bool__(self) -> bool:
        return bool(self.values)

    def in_words(self) -> str:
        """The filter as a sentence's object: 'rows with service compute and status unallocated'."""
        if not self.values:
            return "every row of the version (no filter)"
        return "only rows with " + " and ".join(f"{name} {value}" for name, value in self.values.items())

    def unknown(self, rows: pa.Table, extra: Mapping[str, Iterable[str]],
                more: Callable[[str], Iterable[str]]) -> str | None:
        """Why the filters name values the month does not know (None when every value is known).

        Known values are those of the version's rows, then `extra` (e.g. services with capacity but no
        requests), then `more(name)`, asked only when a value is still unknown (e.g. the landed resources).
        """
        problems = []
        for name, value in self.values.items():
            known = set(_distinct(rows, FILTER_COLUMNS[name])) | set(extra.get(name, ()))
            if value not in known:
                known |= set(more(name))
            if value not in known:
                problems.append(f"unknown {name} {value!r}; known {_plural(name)}: {_listed(known)}")
        if not problems:
            return None
        return "; ".join(problems) + "."

    def empty(self, rows: pa.Table) -> str | None:
        """Why known filter values select no row, naming the values that do occur (None when rows match)."""
        counts = []
        for name, value in self.values.items():
            column = rows.column(FILTER_COLUMNS[name])
            counts.append(f"{name} {value}: {int(pc.sum(pc.equal(column, value)).as_py() or 0):,} rows")
        return (f"No row matches {self.in_words().removeprefix('only ')} (of {rows.num_rows:,} rows: "
                f"{', '.join(counts)}); the export holds no rows.")


def _distinct(rows: pa.Table, column: str) -> list[str]:
    return [v for v in pc.unique(rows.column(column)).to_pylist() if v is not None]


def _plural(name: str) -> str:
    return "statuses" if name == "status" else f"{name}s"


def _listed(values: set[str]) -> str:
    ordered = sorted(values)
    shown = ", ".join(ordered[:LISTED_VALUES])
    return shown + (f" and {len(ordered) - LISTED_VALUES} more" if len(ordered) > LISTED_VALUES else "") if ordered \
        else "none"


def known_beyond_rows(manifest: dict, statuses: Iterable[str]) -> dict[str, list[str]]:
    """Values known without a row: every status, and the services and regions the manifest has capacity for."""
    metrics = manifest.get("metrics")
    groups = (metrics.get("utilization_by_service_region") if isinstance(metrics, dict) else None) or []
    return {"status": list(statuses),
            "service": [str(g["service"]) for g in groups if isinstance(g, dict) and "service" in g],
            "region": [str(g["region"]) for g in groups if isinstance(g, dict) and "region" in g]}


def landed_values(home, month: str, name: str) -> list[str]:
    """Values of the month's landed resources (a real resource with nothing allocated is known)."""
    resources = landed_tables(home, month).resources
    column = {"resource": "resource_id"}.get(name, name)
    if resources is None or column not in resources.columns:
        return []
    return [str(v) for v in resources[column].dropna().unique()]
