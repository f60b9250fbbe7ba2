"""A month's lifecycle: lock, release, finalize, unlock, requests, approve, reject, repair."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from batch import actions
from batch.approvals import KIND_FINALIZE, OPEN_STATUSES, TICKET_ISSUED_ACTION
from batch.lifecycle import final_mismatch, repair_plan
from batch.months import check_month, check_planned_month
from batch.roles import actor_from
from batch.times import local
from batch_cli.context import exports, now, request_ticket, settings, sign_as, store
from batch_cli.failures import CliError, friendly
from batch_cli.output import emit, out, print_filed, print_table
from batch_cli.submit import follow
from resources.settings import view_origin

if TYPE_CHECKING:
    from resources.store_factory import Control


@click.command()
@click.argument("month")
@click.option("--actor")
@click.option("--admins", required=True, help="Comma-separated admins who may act while it is held.")
@click.option("--ttl", "ttl_hours", default=8.0, show_default=True, type=float, help="Time to live, hours.")
@click.option("--json", "as_json", is_flag=True)
@friendly
def lock(month: str, actor: str | None, admins: str, ttl_hours: float, as_json: bool) -> None:
    """Take the temporary lock of a month for a list of designated admins."""
    check_planned_month(month)
    who = actions.may(store(), "lock", actor_from(actor), month)
    names = [a.strip() for a in admins.split(",") if a.strip()]
    outcome = actions.lock(store(), sign_as(who, "lock", month, {"admins": names, "ttl_hours": ttl_hours}))
    assert outcome.lock is not None
    emit({"month": month, "lock": outcome.lock.to_dict()}, as_json, lambda: out.print(outcome.message))


@click.command()
@click.argument("month")
@click.option("--actor")
@friendly
def release(month: str, actor: str | None) -> None:
    """Release the temporary lock of a month."""
    check_planned_month(month)
    who = actions.may(store(), "release", actor_from(actor), month)
    out.print(actions.release(store(), sign_as(who, "release", month)).message)


@click.command()
@click.argument("month")
@click.option("--version", "version", required=True, type=click.IntRange(1))
@click.option("--actor", help="The admin who files the request (else BATCH_ADMIN_ACTOR).")
@click.option("--note", required=True, help="Why this version should become official.")
@click.option("--json", "as_json", is_flag=True)
@friendly
def finalize(month: str, version: int, actor: str | None, note: str, as_json: bool) -> None:
    """File a request to finalize a version; an approver carries it out with `batch-admin approve ID`."""
    check_planned_month(month)
    who = actions.may(store(), "finalize", actor_from(actor), month)
    details = actions.finalize_details(store(), exports(), month, version, note)
    print_filed(actions.file_request(store(), sign_as(who, "request", month, details), view_origin()), as_json)


@click.command()
@click.argument("month")
@click.option("--actor", help="The admin who files the request (else BATCH_ADMIN_ACTOR).")
@click.option("--reason", required=True, help="Why the finalized month must change.")
@click.option("--json", "as_json", is_flag=True)
@friendly
def unlock(month: str, actor: str | None, reason: str, as_json: bool) -> None:
    """File a request to unlock a finalized month; an approver carries it out (raises an alert)."""
    check_planned_month(month)
    who = actions.may(store(), "unlock", actor_from(actor), month)
    details = actions.unlock_details(store(), month, reason)
    print_filed(actions.file_request(store(), sign_as(who, "request", month, details), view_origin()), as_json)


@click.command("requests")
@click.argument("month", required=False)
@click.option("--all", "every", is_flag=True, help="Decided and expired requests too (default: open ones).")
@click.option("--json", "as_json", is_flag=True)
@friendly
def requests_(month: str | None, every: bool, as_json: bool) -> None:
    """Finalize, unlock and roles requests: open ones (of a month, or all), or --all."""
    if month is not None:
        check_month(month)
    at = now()
    rows = [r.to_dict(at) for r in store().requests(month)]
    if not every:
        rows = [r for r in rows if r["status"] in OPEN_STATUSES]

    def human() -> None:
        if not rows:
            out.print("No open requests." if not every else "No requests.")
            return
        print_table(("id", "kind", "month", "version", "by", "filed", "expires", "status", "decided by",
                     "note / reason"),
                    ((r["id"], r["kind"], str(r["month"] or ""), str(r["version"] or ""), r["requested_by"],
                      local(r["requested_at"]), local(r["expires_at"]), r["status"], str(r["decided_by"] or ""),
                      r["decision_text"] or r["text"]) for r in rows))

    emit(rows, as_json, human)


def _decision(request_id: str, actor: str | None, verb: str) -> tuple[Control, Any, str]:
    """The store, the request decided on and who decides (the request is read first: an unknown id is the refusal)."""
    control = store()
    request = control.request(request_id)
    who = actor_from(actor)
    if not who:
        raise CliError(f"Who {verb}? Give --actor or BATCH_ADMIN_ACTOR.")
    return control, request, who


@click.command()
@click.argument("request_id")
@click.option("--actor", help="The approver (else BATCH_ADMIN_ACTOR); never the request's filer.")
@click.option("--json", "as_json", is_flag=True)
@friendly
def approve(request_id: str, actor: str | None, as_json: bool) -> None:
    """Approve a request with your own key and carry it out (finalize: official copy + final lock)."""
    control, request, who = _decision(request_id, actor, "approves")
    issued = request_ticket(who, request)  # the approval issues its request's single run ticket
    outcome = actions.approve(control, sign_as(who, "approve", request.month, actions.approval_details(request, issued)),
                              ticket=issued)
    decided, message = outcome.request, outcome.message
    assert decided is not None
    result: dict[str, Any] = {"request": decided.id, "kind": decided.kind, "month": decided.month,
                              "approved_by": who}
    if outcome.follows is not None:
        result["run_id"] = follow(outcome.follows)
    if decided.kind == KIND_FINALIZE:
        result["final_path"] = str(settings().home / "exports" / "final" / f"month={decided.month}")
        message += f"; official copy {result['final_path']}"
    emit(result, as_json, lambda: out.print(message, markup=False))


@click.command()
@click.argument("request_id")
@click.option("--actor", help="The approver (else BATCH_ADMIN_ACTOR).")
@click.option("--reason", required=True, help="Why it is rejected (sent with the alert).")
@friendly
def reject(request_id: str, actor: str | None, reason: str) -> None:
    """Reject a request with your own key (raises an alert)."""
    control, request, who = _decision(request_id, actor, "rejects")
    outcome = actions.reject(control, sign_as(who, "reject", request.month, {"request_id": request.id,
                                                                          "reason": reason}))
    out.print(outcome.message, markup=False)


@click.command()
@click.argument("month")
@click.option("--actor", help="Who carries out approved requests (else BATCH_ADMIN_ACTOR).")
@click.option("--json", "as_json", is_flag=True)
@friendly
def repair(month: str, actor: str | None, as_json: bool) -> None:
    """Complete or roll back what a crash left half done: an approved request not carried out, an
    official copy that the control store does not back."""
    check_month(month)
    control = store()
    fixes, pending = repair_plan(control, exports(), month)
    for request in pending:
        who = actor_from(actor) or str(request.decided_by)
        issued = request_ticket(who, request)
        assert issued is not None  # repair_plan returns finalize and unlock requests only
        outcome = actions.reissue(control, sign_as(who, TICKET_ISSUED_ACTION, month, {
            "request_id": request.id, "ticket_nonce": issued.nonce}), ticket=issued)
        follow(outcome.follows)
        fixes.append(outcome.message)
    left = final_mismatch(control.month(month), exports())
    result = {"month": month, "fixes": fixes, "consistent": left is None, "problem": left}
    if left is not None:
        raise CliError(f"{month} is still inconsistent after repair: {left}.")
    emit(result, as_json, lambda: out.print(
        "\n".join(f"{month}: {fix}." for fix in fixes) or f"{month}: nothing to repair; the control store and "
        f"exports/final agree.", markup=False))


COMMANDS = (lock, release, finalize, unlock, requests_, approve, reject, repair)
