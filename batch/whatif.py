"""What-if: what a change (capacity, pins, exclusions, parameters) would do to the latest version, read-only.

Nothing is written: no version, no audit entry, no lock. The changed month is solved from the latest
version's assignment (the re-run's warm start, solvers' stability), and only its independent parts
that the change touches are re-solved (all of them when a parameter changes); the others keep the
version's allocation as it is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from batch.inputs import load_landing
from batch.months import previous_month
from batch.params import ParamError, parse_assignment, solver_params
from batch.plan import final_map
from solvers import build_instance, solve
from solvers.decompose import merge_proposals, part_count, split_instance
from solvers.schema import STATUS_ALLOCATED, STATUS_EXCLUDED, STATUS_PINNED, AllocationInstance, SolverParams
from solvers.validation import objective_value

# Requests listed by name in the answer (the count is always complete).
MAX_LISTED_MOVES = 200


class WhatIfError(ValueError):
    """A what-if that cannot be answered as asked; str() is one clear sentence."""


class VersionSource(Protocol):
    """What a what-if reads of the export store."""

    def latest_version(self, month: str) -> int | None: ...
    def read_version(self, month: str, version: int) -> pd.DataFrame: ...
    def manifest(self, month: str, version: int) -> dict: ...
    def final_manifest(self, month: str) -> dict | None: ...
    def read_final(self, month: str) -> pd.DataFrame: ...


@dataclass
class Change:
    """The change asked about: capacity deltas, extra pins and exclusions, parameters set."""

    capacity: dict[str, int] = field(default_factory=dict)
    pins: dict[str, str] = field(default_factory=dict)
    exclusions: set[str] = field(default_factory=set)
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, capacity: list[str], pins: list[str], exclusions: list[str], sets: list[str]) -> Change:
        """The command line's `RES=+N`, `REQ=RES`, `REQ` and `key=value` texts, checked for form."""
        change = cls(exclusions={text.strip() for text in exclusions})
        for text in capacity:
            resource, _, delta = text.partition("=")
            try:
                change.capacity[resource.strip()] = change.capacity.get(resource.strip(), 0) + int(delta)
            except ValueError:
                raise WhatIfError(f"--capacity {text!r} must look like RES=+N or RES=-N (e.g. R0017=+5).") from None
        for text in pins:
            request, _, resource = text.partition("=")
            if not request.strip() or not resource.strip():
                raise WhatIfError(f"--pin {text!r} must look like REQ=RES (e.g. Q00042=R0017).")
            change.pins[request.strip()] = resource.strip()
        for text in sets:
            try:
                key, value = parse_assignment(text)
            except ParamError as exc:
                raise WhatIfError(str(exc)) from None
            change.params[key] = value
        return change


def what_if(home: Path, exports: VersionSource, month: str, change: Change) -> dict[str, Any]:
    """The latest version of `month` against the same month with `change`: figures before and after, moves."""
    started = time.perf_counter()
    version = exports.latest_version(month)
    if version is None:
        raise WhatIfError(f"Month {month} has no version yet: run it first (`batch-admin run {month}`).")
    manifest = exports.manifest(month, version)
    rows = exports.read_version(month, version)
    tables = load_landing(home, month)
    if manifest.get("input_fingerprint") and manifest["input_fingerprint"] != tables.fingerprint:
        raise WhatIfError(f"The landed inputs of {month} changed since version {version}: run the month again "
                          f"before asking what a change would do.")
    before_params = solver_params(_stored(manifest.get("parameters") or {}))
    after_params = solver_params({**_stored(manifest.get("parameters") or {}), **change.params})
    last = previous_month(month)
    previous_final = final_map(exports.read_final(last)) if exports.final_manifest(last) else {}
    pins = dict(zip(rows.loc[rows["status"] == STATUS_PINNED, "request_id"],
                    rows.loc[rows["status"] == STATUS_PINNED, "resource_id"]))
    excluded = set(rows.loc[rows["status"] == STATUS_EXCLUDED, "request_id"])

    def month_instance(params: SolverParams) -> AllocationInstance:
        return build_instance(month, tables.requests, tables.resources, availability=tables.availability,
                              eligibility=tables.eligibility, params=params, previous_final=previous_final,
                              pins=pins, exclusions=excluded, previous_version=final_map(rows))

    base = month_instance(before_params)
    # Pair costs depend on parameters (default_cost): the changed month is built with its own.
    changed = _apply(month_instance(after_params) if change.params else base, change)
    loaded = time.perf_counter()
    touched, parts = _touched_parts(changed, change)
    before = rows.set_index("request_id")
    solved = merge_proposals(changed, [solve(part, after_params) for part in touched]) if touched else None
    after = before[["resource_id", "units", "cost", "status"]].copy()
    if solved is not None:
        fresh = solved.allocations.set_index("request_id")
        after.loc[fresh.index, ["resource_id", "units", "cost", "status"]] = fresh[
            ["resource_id", "units", "cost", "status"]].to_numpy()
    after = after.reset_index()
    answer = {
        "month": month, "version": version, "changes": _describe(change),
        "parts": {"re_solved": len(touched), "of": parts},
        "before": _figures(base, rows, before_params, base.resources),
        "after": _figures(changed, after, after_params, changed.resources),
        "moves": _moves(rows, after),
        "groups": _group_changes(base, rows, after),
        "solved": None if solved is None else {
            "objective": solved.objective, "bound": solved.bound, "gap": solved.gap, "status": solved.status,
            "stop_reason": solved.stop_reason, "requests": int(sum(len(p.requests) for p in touched))},
        "seconds": {"load": round(loaded - started, 3), "solve": round(time.perf_counter() - loaded, 3),
                    "total": round(time.perf_counter() - started, 3)},
    }
    return answer


def _stored(parameters: dict[str, Any]) -> dict[str, Any]:
    """A version's parameter record (batch.params.params_snapshot) as stored `key: value` parameters."""
    stored = {f"weight.{k}": int(v) for k, v in (parameters.get("weights") or {}).items()}
    for key in ("time_limit_s", "seed", "workers", "default_cost", "deterministic_work", "gap_tolerance",
                "stability"):
        if parameters.get(key) is not None:
            stored[key] = parameters[key]
    return stored


def _apply(instance: AllocationInstance, change: Change) -> AllocationInstance:
    """The month with the change; an unknown id, a negative capacity or an ineligible pin is refused."""
    resources = instance.resources.copy()
    # Hashed indexes, not Python sets: iterating 20,000 Arrow strings into a set costs ~0.1 s.
    known_resources = pd.Index(resources["resource_id"])
    known_requests = pd.Index(instance.requests["request_id"])
    for resource, delta in sorted(change.capacity.items()):
        if resource not in known_resources:
            raise WhatIfError(f"--capacity names resource {resource!r}, which is not in {instance.month}'s resources.")
        at = resources["resource_id"] == resource
        now = int(resources.loc[at, "capacity"].iloc[0])
        if now + delta < 0:
            raise WhatIfError(f"--capacity {resource}={delta:+d} would make its capacity negative "
                              f"({now} units now, {now + delta} after); capacity must stay >= 0.")
        resources.loc[at, "capacity"] = now + delta
    for request in sorted(change.exclusions):
        if request not in known_requests:
            raise WhatIfError(f"--exclude names request {request!r}, which is not in {instance.month}'s requests.")
    pairs = instance.pairs
    for request, resource in sorted(change.pins.items()):
        if request not in known_requests:
            raise WhatIfError(f"--pin names request {request!r}, which is not in {instance.month}'s requests.")
        if resource not in known_resources:
            raise WhatIfError(f"--pin names resource {resource!r}, which is not in {instance.month}'s resources.")
        # One comparison per pin: a set of all pairs took 2.3 s on a month of 500,000 pairs.
        if not ((pairs["request_id"] == request) & (pairs["resource_id"] == resource)).any():
            raise WhatIfError(f"--pin {request}={resource}: {resource} is not eligible for {request} (no eligible "
                              f"pair: other service or region, or no availability in its date window).")
        if request in change.exclusions:
            raise WhatIfError(f"--pin {request}={resource} and --exclude {request} contradict each other.")
    pins = {**{r: v for r, v in instance.pins.items() if r not in change.exclusions}, **change.pins}
    return replace(instance, resources=resources, pins=pins, exclusions=instance.exclusions | change.exclusions)


def _touched_parts(instance: AllocationInstance, change: Change) -> tuple[list[AllocationInstance], int]:
    """The independent parts the change touches (every part when a parameter changes), and the count of all."""
    if change.params:
        parts = split_instance(instance)
        return parts, len(parts)
    touching = (set(change.pins) | change.exclusions, set(change.capacity) | set(change.pins.values()))
    return split_instance(instance, touching), part_count(instance)


def _figures(instance: AllocationInstance, rows: pd.DataFrame, params: SolverParams,
             resources: pd.DataFrame) -> dict[str, Any]:
    """Objective, success rate and utilization of one allocation of the month."""
    placed = rows["status"].isin([STATUS_ALLOCATED, STATUS_PINNED])
    capacity = int(resources["capacity"].sum())
    used = int(rows.loc[placed, "units"].sum())
    return {"objective": objective_value(instance, rows, params.weights),
            "allocated": int(placed.sum()), "requests": int(len(rows)),
            "success_rate": round(float(placed.mean()) if len(rows) else 0.0, 4),
            "planned_units": used, "capacity_units": capacity,
            "utilization": round(used / capacity, 4) if capacity else None}


def _moves(before: pd.DataFrame, after: pd.DataFrame) -> dict[str, Any]:
    """Requests whose resource would change (newly served and dropped ones included)."""
    joined = before[["request_id", "resource_id"]].merge(after[["request_id", "resource_id"]], on="request_id",
                                                         suffixes=("_before", "_after"))
    old, new = joined["resource_id_before"], joined["resource_id_after"]
    moved = joined[(old.fillna("") != new.fillna(""))].sort_values("request_id")
    listed = [{"request_id": r, "from": None if pd.isna(a) else a, "to": None if pd.isna(b) else b}
              for r, a, b in moved[["request_id", "resource_id_before", "resource_id_after"]].itertuples(index=False)]
    return {"count": len(listed), "list": listed[:MAX_LISTED_MOVES]}


def _group_changes(instance: AllocationInstance, before: pd.DataFrame, after: pd.DataFrame) -> list[dict[str, Any]]:
    """Service x region groups whose unallocated requests (the shortage) would change."""
    groups = instance.requests[["request_id", "service", "region"]]

    def waiting(rows: pd.DataFrame) -> pd.Series:
        table = groups.merge(rows[["request_id", "status"]], on="request_id")
        short = table[~table["status"].isin([STATUS_ALLOCATED, STATUS_PINNED, STATUS_EXCLUDED])]
        return short.groupby(["service", "region"]).size()

    old, new = waiting(before), waiting(after)
    keys = sorted(set(old.index) | set(new.index))
    return [{"service": s, "region": r, "unallocated_before": int(old.get((s, r), 0)),
             "unallocated_after": int(new.get((s, r), 0))}
            for s, r in keys if int(old.get((s, r), 0)) != int(new.get((s, r), 0))]


def _describe(change: Change) -> dict[str, Any]:
    return {"capacity": dict(sorted(change.capacity.items())), "pins": dict(sorted(change.pins.items())),
            "exclusions": sorted(change.exclusions), "params": dict(sorted(change.params.items()))}
