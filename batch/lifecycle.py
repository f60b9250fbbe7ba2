"""The month's lifecycle: phases, carrying out approved requests, and repairing what a crash left.

Finalization is one recoverable transaction: the approved version's files are verified against
the request, the official copy is staged and published and verified, and only then does the
control store set the final lock (with the request done) in one transaction. Whatever a crash
leaves half done, `repair` completes (an approved request) or rolls back (an official copy the
store does not back).
"""

from __future__ import annotations

from typing import Any, Protocol

from batch.approvals import APPROVED, KIND_FINALIZE, KIND_UNLOCK, Request, data_checksum
from batch.errors import ControlError
from batch.faults import crash_point
from batch.ports import RecordsPort
from batch.standing import withdrawals

# Phases of a month (SPEC §4): open -> planning -> proposed -> finalized (-> proposed by unlock).
PHASE_OPEN = "open"
PHASE_PLANNING = "planning"
PHASE_PROPOSED = "proposed"
PHASE_FINALIZED = "finalized"
PHASES = (PHASE_OPEN, PHASE_PLANNING, PHASE_PROPOSED, PHASE_FINALIZED)

# Jobs by name (pipelines/jobs.py defines them; the CLI and the store's rules refer to them).
PLAN_JOB = "plan_job"
EXECUTE_JOB = "execute_job"
FINALIZE_JOB = "finalize_job"
UNLOCK_JOB = "unlock_job"
WRITING_JOBS = (PLAN_JOB, EXECUTE_JOB)


class Exports(Protocol):
    """What the lifecycle needs of the export store."""

    def verify(self, month: str, version: int) -> bool: ...
    def manifest(self, month: str, version: int) -> dict: ...
    def write_final(self, month: str, version: int, extra: dict) -> Any: ...
    def verify_final(self, month: str) -> bool: ...
    def final_manifest(self, month: str) -> dict | None: ...
    def withdraw_final(self, month: str) -> bool: ...


def carry_out_finalize(store: RecordsPort, exports: Exports, request_id: str, month: str, run_id: str) -> dict[str, Any]:
    """Finalize as approved: verify, publish and verify the official copy, then commit the final lock."""
    request = store.approved_request(request_id, KIND_FINALIZE, month)  # refuses a done or overtaken one
    version = request.version
    assert version is not None  # the store files a finalize request with its version (file_request)
    try:
        store.check_finalize_binding(request)
        if not exports.verify(month, version):
            raise ControlError(f"Version {version} of {month} fails its checksums and cannot be finalized.")
        if data_checksum(exports.manifest(month, version)) != request.binding.get("data_checksum"):
            raise ControlError(f"Version {version} of {month} holds other data than the request approved.")
    except ControlError as exc:
        store.mark_stale(request.id, str(exc))
        raise
    _publish(store, exports, request, version, month, run_id)
    crash_point("final_commit")
    store.complete_finalize(request.id, run_id)
    return dict(exports.final_manifest(month) or {})


def _publish(store: RecordsPort, exports: Exports, request: Request, version: int, month: str, run_id: str) -> None:
    # run_id stays the run that computed the version; the finalize run is finalize_run_id.
    exports.write_final(month, version, {
        "finalized_by": request.requested_by, "approved_by": request.decided_by, "request_id": request.id,
        "finalize_run_id": run_id, "final_audit_anchor": store.audit_anchor(),
        "withdrawn_finals": [w.as_json() for w in withdrawals(store.requests(month))]})
    if not exports.verify_final(month):
        raise ControlError(f"The official copy of {month} fails its checksums right after it was written.")


def carry_out_unlock(store: RecordsPort, exports: Exports, request_id: str, month: str, run_id: str) -> Request:
    """Unlock as approved: the month back to proposed, and its official copy withdrawn (a done or
    overtaken request is refused before anything is withdrawn)."""
    request = store.approved_request(request_id, KIND_UNLOCK, month)
    done = store.complete_unlock(request.id, run_id)
    exports.withdraw_final(month)
    return done


def final_mismatch(row: dict[str, Any], exports: Exports) -> str | None:
    """Why the official copy disagrees with the control store (None when it agrees)."""
    month, final_version = row["month"], row.get("final_version")
    manifest = exports.final_manifest(month)
    if final_version is None:
        if manifest is not None:
            return (f"exports/final holds version {manifest.get('version')} of {month}, which the control store "
                    f"does not record as finalized")
        return None
    if manifest is None:
        return f"{month} is finalized at version {final_version} but exports/final has no official copy"
    if manifest.get("version") != final_version:
        return (f"{month} is finalized at version {final_version} but exports/final holds version "
                f"{manifest.get('version')}")
    if not exports.verify_final(month):
        return f"the official copy of {month} fails its checksums"
    return None


def repair_plan(store: RecordsPort, exports: Exports, month: str) -> tuple[list[str], list[Request]]:
    """What `repair` does for a month: file fixes (done here) and approved requests to carry out
    (by their jobs, returned). Returns the fixes made, in sentences, and the requests."""
    approved = [r for r in store.requests(month) if r.status == APPROVED and r.kind in (KIND_FINALIZE, KIND_UNLOCK)]
    if approved:
        return [], approved
    row = store.month(month)
    problem = final_mismatch(row, exports)
    if problem is None:
        return [], []
    if row.get("final_version") is None:
        exports.withdraw_final(month)
        return [f"{problem}: the official copy was withdrawn (rolled back)"], []
    exports.write_final(month, int(row["final_version"]), {
        "finalized_by": row.get("finalized_by"), "approved_by": row.get("approved_by"),
        "repaired": True, "final_audit_anchor": store.audit_anchor()})
    if not exports.verify_final(month):
        raise ControlError(f"The official copy of {month} still fails its checksums after repair.")
    return [f"{problem}: the official copy was written again from version {row['final_version']}"], []
