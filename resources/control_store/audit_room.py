"""The audit room: signed actions that change no state, the hash chain's entries and anchor, and its
verification against signatures, outside anchors and the state tables."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from batch import approvals
from batch.approvals import Request
from batch.identity import IdentityError, Signed, check_signature
from resources.control_store.key_room import KeyRoom
from resources.control_store.plumbing import _aware, _entry_hash
from resources.control_store.request_room import _request_of
from resources.control_store.tables import (
    GENESIS_HASH,
    audit,
    audit_head,
    months,
    requests,
)


@dataclass
class AuditVerification:
    """The result of re-computing the audit hash chain."""

    ok: bool
    entries: int
    problems: list[str]


class AuditRoom(KeyRoom):
    """The audit chain: entries on their own, reads, the anchor and the verification."""

    def record(self, month: str | None, actor: str | None, action: str,
               details: dict[str, Any]) -> None:
        """Append one audit entry on its own (exports, alerts, refusals)."""
        with self.write() as conn:
            self._append_audit(conn, month, actor, action, details)

    def record_signed(self, signed: Signed) -> None:
        """Audit a signed action that changes no state (an export) by anyone in the roles."""
        with self._signed(signed, signed.action, signed.month) as (conn, roles):
            roles.require_known(signed.actor, f"{signed.action} {signed.month or ''}".strip())
            self._append_audit(conn, signed.month, signed.actor, signed.action, dict(signed.details), signed)

    def audit_entries(self, month: str | None = None) -> list[dict[str, Any]]:
        rows = self._rows_by_month(audit, month)
        for r in rows:
            r["at"] = _aware(r["at"])
            r["details"] = json.loads(r["details_json"])
        return rows

    def audit_anchor(self) -> dict[str, Any]:
        """The chain's head, written into manifests and the Dagster event log as an anchor."""
        with self.read() as conn:
            head = conn.execute(sa.select(audit_head)).mappings().first()
        if head is None:
            return {"last_id": 0, "last_hash": GENESIS_HASH, "entries": 0}
        return {"last_id": head["last_id"], "last_hash": head["last_hash"], "entries": head["entries"]}

    def verify_audit(self, anchors: list[dict[str, Any]] | None = None) -> AuditVerification:
        """Re-compute the chain, check every signature against the keys of the accepted roles, the
        anchors kept outside the database (manifests, the Dagster event log) and the state tables
        against the chain; problems are listed in the order of the entries they concern."""
        with self.read() as conn:
            rows = conn.execute(sa.select(audit).order_by(audit.c.id)).mappings().all()
            head = conn.execute(sa.select(audit_head)).mappings().first()
            keys = self._all_public_keys(conn)
            month_rows = conn.execute(sa.select(months)).mappings().all()
            request_rows = [_request_of(dict(r)) for r in conn.execute(sa.select(requests)).mappings()]
        problems: list[tuple[int, str]] = []
        prev = GENESIS_HASH
        by_id = {r["id"]: r for r in rows}
        for r in rows:
            if r["prev_hash"] != prev:
                problems.append((r["id"], f"entry {r['id']} does not follow the entry before it (one was removed or changed)"))
            expected = _entry_hash(r["prev_hash"], r["month"], r["at"], r["actor"], r["action"],
                                   r["details_json"], r["signed_json"])
            if expected != r["hash"]:
                problems.append((r["id"], f"entry {r['id']} ({r['action']}) was changed after it was written"))
            if r["signed_json"] is not None:
                problem = _signature_problem(r, keys)
                if problem:
                    problems.append((r["id"], problem))
            prev = r["hash"]
        last = rows[-1]["id"] if rows else 0
        if head is None and rows:
            problems.append((last, "the chain head is missing"))
        if head is not None:
            if head["entries"] != len(rows):
                problems.append((last, f"the chain holds {len(rows)} entries but {head['entries']} were written"))
            if not rows or head["last_hash"] != rows[-1]["hash"]:
                problems.append((last, "the newest entries were removed or changed"))
        for anchor in anchors or []:
            entry = by_id.get(int(anchor.get("last_id") or 0))
            where = anchor.get("where", "an anchor")
            if int(anchor.get("entries") or 0) > len(rows):
                problems.append((int(anchor.get("last_id") or 0),
                                 f"{where} anchors {anchor.get('entries')} entries but the log holds {len(rows)} "
                                 f"(entries were removed or the log was wiped)"))
            elif anchor.get("last_id") and entry is None:
                problems.append((int(anchor["last_id"]), f"entry {anchor['last_id']} anchored by {where} is missing"))
            elif entry is not None and entry["hash"] != anchor.get("last_hash"):
                problems.append((entry["id"], f"entry {entry['id']} differs from the hash anchored by {where} "
                                              f"(the log was rewritten)"))
        problems.extend(_state_problems(rows, month_rows, request_rows))
        ordered = [text for _, text in sorted(problems, key=lambda p: p[0])]
        return AuditVerification(ok=not ordered, entries=len(rows), problems=ordered)


def _signature_problem(row: Any, keys: dict[str, list[str]]) -> str | None:
    """Why an entry's signed action does not stand (None when it does)."""
    try:
        signed = Signed.from_dict(json.loads(row["signed_json"]))
    except (IdentityError, ValueError):
        return f"entry {row['id']} ({row['action']}) holds an unreadable signature"
    if signed.actor != row["actor"]:
        return f"entry {row['id']} ({row['action']}) names {row['actor']} but was signed by {signed.actor}"
    if not check_signature(signed, keys.get(signed.actor, [])):
        return f"entry {row['id']} ({row['action']}) is not signed with {signed.actor}'s key"
    if row["nonce"] is not None:  # a signed action (not a run ticket): what was signed is what is recorded
        details = json.loads(row["details_json"])
        if signed.action != row["action"] or signed.month != row["month"] or signed.nonce != row["nonce"] or any(
                details.get(k) != v for k, v in signed.details.items()):
            return f"entry {row['id']} ({row['action']}) records other details than its actor signed"
    return None


def _state_problems(rows: Any, month_rows: Any, request_rows: list[Request]) -> list[tuple[int, str]]:
    """The state tables against the chain: who finalized and approved which version, who decided requests."""
    problems: list[tuple[int, str]] = []
    final: dict[str, tuple[Any, Any, Any, int]] = {}
    decisions: dict[str, tuple[str, str, int]] = {}
    for r in rows:
        details = json.loads(r["details_json"])
        if r["action"] == "finalize" and r["month"]:
            final[r["month"]] = (details.get("version"), details.get("finalized_by"), details.get("approver"), r["id"])
        elif r["action"] == "unlock" and r["month"]:
            final.pop(r["month"], None)
        elif r["action"] in (approvals.APPROVE_ACTION, approvals.REJECT_ACTION) and details.get("request_id"):
            decisions[str(details["request_id"])] = (r["action"], r["actor"], r["id"])
    for m in month_rows:
        expected = final.get(m["month"])
        stored = (m["final_version"], m["finalized_by"], m["approved_by"]) if m["final_version"] is not None else None
        if expected is None and stored is not None:
            problems.append((10**12, f"month {m['month']} is finalized (version {m['final_version']}) in the state "
                                     f"tables but no finalize entry says so"))
        elif expected is not None and stored != expected[:3]:
            problems.append((expected[3], f"month {m['month']}'s final version, finalizer or approver in the state "
                                          f"tables differ from entry {expected[3]} (version {expected[0]}, by "
                                          f"{expected[1]}, approved by {expected[2]})"))
    for req in request_rows:
        if req.decided_by is None:
            continue
        decision = decisions.get(req.id)
        verb = approvals.REJECT_ACTION if req.status == approvals.REJECTED else approvals.APPROVE_ACTION
        if decision is None or decision[:2] != (verb, req.decided_by):
            problems.append((decision[2] if decision else 10**12,
                             f"request {req.id} is {req.status} by {req.decided_by} in the state tables but no "
                             f"signed {verb} entry by {req.decided_by} says so"))
    return problems
