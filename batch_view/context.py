"""The context of every page: plain, JSON-able dicts built from the core's and the stores' own reads.

A page renders its context with a template, and the same context is its `.json`: they never disagree.
Nothing here decides a rule; each figure comes from the function the CLI and the report use.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from typing import Any

from batch.approvals import EXPIRED, KIND_FINALIZE, OPEN_STATUSES, REQUEST_TTL, Request
from batch.formats import headline
from batch.lifecycle import final_mismatch
from batch.months import check_month, next_month
from batch.params import PARAMS
from batch.report import VersionView, audit_line, leading_changes
from batch.roles import RoleError
from batch_view.advice import advice_context
from batch_view.dagster_reads import latest_input_validation, run_status
from batch_view.memo import Memo
from batch_view.month_reads import landing_context, month_health
from batch_view.sources import Sources
from resources.control_store import utcnow
from resources.event_log_anchors import event_log_anchors
from resources.month_overview import month_lines

# The figures a version row shows, in order (stored metrics of the control store's version row).
VERSION_FIGURES = ("requests", "allocated", "success_rate", "utilization", "objective", "bound", "gap",
                   "solve_seconds", "stop_reason")
MOVES_SHOWN = 200


def months_context(src: Sources) -> dict[str, Any]:
    """One row per month the product knows, and the next month: phase, lock, versions, figures, requests,
    alerts and a run in progress (resources.month_overview: three statements for every month)."""
    store = src.store
    now = utcnow()
    upcoming = next_month(f"{now.year}-{now.month:02d}")
    lines = month_lines(store, [*src.exports.months(), upcoming])
    open_requests: dict[str | None, int] = {}
    for request in store.requests():
        if request.effective_status(now) in OPEN_STATUSES:
            open_requests[request.month] = open_requests.get(request.month, 0) + 1
    rows = []
    for month in sorted(lines, reverse=True):
        found = lines[month]
        line, lock, lease = dict(found.line), found.lock, found.lease
        line["lock"] = {**lock.to_dict(), "until": lock.expires_at} if lock else None
        line["run"] = {**lease.to_dict(now), "elapsed_s": round((now - lease.acquired_at).total_seconds()),
                       "dagster": src.dagster.run(lease.run_id)} if lease else None
        line["open_requests"] = open_requests.get(month, 0)
        line["upcoming"] = month == upcoming
        line["dagster_runs"] = src.dagster.runs(month)
        rows.append(line)
    return {"title": "Months", "months": rows, "open_requests": sum(open_requests.values()), "next_month": upcoming}


def month_context(src: Sources, month: str, memo: Memo | None = None) -> dict[str, Any]:
    """Everything about one month: state, inputs, plan, parameters, adjustments, versions, requests, audit, alerts.
    With a memo, the landed inputs and the version's figures are computed once per state of their files
    (batch_view/month_reads.py)."""
    month = check_month(month)
    memo = memo or Memo()
    store, exports = src.store, src.exports
    now = utcnow()
    row = store.month(month)
    lock = store.lock_info(month)
    lease = store.lease(month)
    pins, exclusions = store.pins_and_exclusions(month)
    versions = store.versions(month)
    plan = store.latest_plan(month)
    health = month_health(src, memo, month)
    set_params = store.params(month)
    return {
        "title": month, "month": month, "phase": row["phase"],
        "lock": lock.to_dict() if lock else None,
        "run": {**lease.to_dict(now), "dagster": src.dagster.run(lease.run_id),
                "elapsed_s": round((now - lease.acquired_at).total_seconds()),
                "status": run_status(instance, lease.run_id) if (instance := src.instance()) else None}
        if lease else None,
        "final": {"version": row["final_version"], "finalized_by": row["finalized_by"],
                  "approved_by": row["approved_by"], "finalized_at": row["finalized_at"]}
        if row["final_version"] else None,
        "official_copy_problem": final_mismatch(row, exports),
        "inputs": {**landing_context(src, memo, month),
                   "validation": input_validation(src, month)},
        "plan": plan["summary"] if plan else None,
        "plan_at": plan.get("created_at") if plan else None,
        "advice": advice_context(src, month, health["version"], plan),  # batch_view/advice.py: read, not solved
        "params": [{"key": key, "value": set_params.get(key), "help": spec.help, "low": spec.low, "high": spec.high,
                    "kind": spec.kind.__name__} for key, spec in PARAMS.items()],
        "pins": [{"request_id": r, "resource_id": res} for r, res in sorted(pins.items())],
        "exclusions": sorted(exclusions),
        "versions": [version_row(v, row["final_version"]) for v in reversed(versions)],
        "health": health,
        "headline": headline(health["metrics"] or {}),
        "charts_version": health["version"],
        "requests": [r.to_dict(now) for r in store.requests(month)],
        "audit": [audit_row(entry) for entry in store.audit_entries(month)],
        "alerts": store.alerts(month),
        "dagster": src.dagster.month(month),
    }


def input_validation(src: Sources, month: str) -> dict[str, Any] | None:
    """The month's latest expectations check from the Dagster event log, with each failed rule; None before one."""
    instance = src.instance()
    validation = latest_input_validation(instance, month) if instance is not None else None
    if validation is not None:
        validation["at"] = datetime.fromtimestamp(validation["at"], UTC)
    return validation


def version_row(version: dict[str, Any], final_version: int | None) -> dict[str, Any]:
    """A version as its row shows it: who, when, why, and its stored figures."""
    metrics = version["metrics"]
    churn = metrics.get("churn") or {}
    return {"version": version["version"], "created_at": version["created_at"], "actor": version["actor"],
            "note": version["note"], "status": version["status"], "final": version["version"] == final_version,
            "moved": churn.get("requests_moved") if churn.get("previous_allocated") else None,
            **{key: metrics.get(key) for key in VERSION_FIGURES}}


def audit_row(entry: dict[str, Any]) -> dict[str, Any]:
    """An audit entry in words (batch.report.audit_line), with its hash and whether it is signed."""
    when, who, action, what = audit_line(entry)
    return {"id": entry["id"], "at": entry["at"], "when": when, "actor": who, "action": action, "what": what,
            "hash": entry["hash"], "signed": entry.get("signed_json") is not None}


def audit_check_context(src: Sources, month: str) -> dict[str, Any]:
    """The audit chain verified: its hashes, every signature, the manifests' anchors and the state tables."""
    month = check_month(month)
    instance = src.instance()  # the anchors in manifests and in the Dagster event log, as `audit --verify` reads
    anchors = [*src.exports.audit_anchors(), *(event_log_anchors(instance) if instance is not None else [])]
    result = src.store.verify_audit(anchors)
    mismatch = final_mismatch(src.store.month(month), src.exports)
    problems = [*result.problems, *([mismatch] if mismatch else [])]
    return {"title": f"{month} audit", "month": month, "ok": not problems, "entries": result.entries,
            "anchors": len(anchors), "dagster": instance is not None, "problems": problems}


def diff_context(src: Sources, month: str, from_version: int, to_version: int) -> dict[str, Any]:
    """Two versions compared (ExportStore.diff): leading figures, counts, moves by service and region, the list."""
    month = check_month(month)
    known = src.exports.versions(month)
    for version in (from_version, to_version):
        if version not in known:
            raise LookupError(f"Month {month} has no version {version} (versions: {', '.join(map(str, known)) or 'none'}).")
    result = src.exports.diff(month, from_version, to_version, write=False)
    rows = src.exports.read_version(month, to_version)
    groups = rows.set_index("request_id")[["service", "region"]]
    by_group: dict[tuple[str, str], int] = {}
    for move in result["moved"]:
        if move["request_id"] in groups.index:
            service, region = groups.loc[move["request_id"]]
            by_group[(str(service), str(region))] = by_group.get((str(service), str(region)), 0) + 1
    return {"title": f"{month}: version {from_version} -> {to_version}", "month": month,
            "from": from_version, "to": to_version, "counts": result["counts"],
            "leading": [{"name": name, **change} for name, change in leading_changes(result).items()],
            "moved_by_group": [{"service": s, "region": r, "moved": n}
                               for (s, r), n in sorted(by_group.items(), key=lambda item: -item[1])],
            "moved": result["moved"][:MOVES_SHOWN], "added": result["added"][:MOVES_SHOWN],
            "removed": result["removed"][:MOVES_SHOWN], "versions": src.exports.versions(month)}


def report_context(view: VersionView) -> dict[str, Any]:
    """A version's report (batch.report.version_view): headline, change lines, reasons and chart names."""
    return {"title": view.title, "month": view.month, "version": view.version, "final": view.final,
            "headline": view.headline(), "changes": view.change_lines(),
            "reasons": view.reason_table().to_dict("records"),
            "services": view.service_table().to_dict("records"),
            "charts": [{"name": chart.name, "title": chart.title} for chart in view.charts()],
            "note": view.manifest.get("note"), "problems": view.problems}


def approvals_context(src: Sources) -> dict[str, Any]:
    """Every open request with what its approver signs: action, month, version, figures, requester, reason."""
    store = src.store
    now = utcnow()
    items = []
    every = store.requests()
    for request in every:
        status = request.effective_status(now)
        if status not in OPEN_STATUSES:
            continue
        item = request.to_dict(now)
        item["what"] = request.what()
        item["signs"] = {"action": "approve", "month": request.month,
                         "details": {"request_id": request.id, "binding": request.binding_public()}}
        item["figures"] = []
        item["final_version"] = None
        if request.kind == KIND_FINALIZE and request.month:
            chosen = next((v for v in store.versions(request.month) if v["version"] == request.version), None)
            item["figures"] = headline(chosen["metrics"]) if chosen else []
            item["final_version"] = store.month(request.month)["final_version"]
        items.append(item)
    approvers = sorted(store.roles(gate=False).approvers)
    return {"title": "Approvals", "requests": items, "approvers": approvers,
            "expired": expired_requests(every, now)}


# How far back the approvals page shows requests that expired undecided.
EXPIRED_SHOWN = timedelta(days=14)


def expired_requests(requests: list[Request], now: datetime) -> list[dict[str, Any]]:
    """Requests that expired without a decision in the last EXPIRED_SHOWN, newest first: when, and why."""
    hours = REQUEST_TTL.total_seconds() / 3600
    shown = []
    for request in requests:
        if request.effective_status(now) != EXPIRED or now - request.expires_at > EXPIRED_SHOWN:
            continue
        item = request.to_dict(now)
        item["what"] = request.what()
        item["why"] = (f"Nobody with the approver role approved or rejected it within {hours:g} hours of its "
                       f"filing; file it again to have it decided.")
        shown.append(item)
    return sorted(shown, key=lambda item: item["expires_at"], reverse=True)


def people_context(src: Sources) -> dict[str, Any]:
    """The accepted roles: each person's roles and public key; a changed roles file is said, not hidden."""
    status = src.store.roles_file_status()
    try:
        roles = src.store.roles()
        problem = None
    except RoleError as exc:
        roles = src.store.roles(gate=False)
        problem = str(exc)
    names = sorted(roles.admins | roles.approvers | roles.system | set(roles.keys))
    people = [{"name": name, "admin": name in roles.admins, "approver": name in roles.approvers,
               "system": name in roles.system, "key": roles.keys.get(name)} for name in names]
    return {"title": "People", "people": people, "source": roles.source, "problem": problem,
            "roles_file": status, "demo": src.demo, "passkeys": src.store.passkeys()}


def plain(value: Any) -> Any:
    """A context as strict JSON: times as ISO text, NaN as null, tuples as lists."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
