"""A month's inputs and settings: demo-data, status, plan, params, adjust."""

from __future__ import annotations

import click

from batch import actions
from batch.advice_text import ADVICE_KEY
from batch.approvals import OPEN_STATUSES
from batch.health import month_health, months_overview
from batch.lifecycle import PLAN_JOB, final_mismatch
from batch.months import check_month, check_planned_month
from batch.params import param_settings, parse_assignment
from batch.roles import actor_from
from batch_cli.context import now, settings, sign_as, store, versions
from batch_cli.failures import CliError, friendly
from batch_cli.month_view import print_overview, print_status
from batch_cli.output import emit, out, print_advice, print_pairs, version_summary
from batch_cli.submit import admitted, follow


@click.command("demo-data")
@click.argument("month")
@click.option("--requests", "n_requests", default=2000, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--resources", "n_resources", default=120, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**32 - 1))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@friendly
def demo_data(month: str, n_requests: int, n_resources: int, seed: int, as_json: bool) -> None:
    """Write a realistic, deterministic month of inputs into landing/YYYY-MM/."""
    check_month(month)
    from batch.demo_data import generate_month, write_landing  # deferred: start-up speed (pandas)

    tables = generate_month(month, requests=n_requests, resources=n_resources, seed=seed)
    path = write_landing(settings().home, month, tables)
    result = {"month": month, "landing": str(path), **{t: len(df) for t, df in tables.items()}}
    emit(result, as_json, lambda: out.print(
        f"Wrote {month}: {result.get('requests', 0)} requests, {result.get('resources', 0)} resources -> {path}"))


@click.command()
@click.argument("month")
@click.option("--actor", help="Who acts (else BATCH_ADMIN_ACTOR).")
@click.option("--json", "as_json", is_flag=True)
@friendly
def plan(month: str, actor: str | None, as_json: bool) -> None:
    """Preview a month: validate inputs, demand vs capacity, conflicts, expected allocation."""
    run_id = follow(admitted(PLAN_JOB, month, actor, None).follows)
    latest = store().latest_plan(month) or {}
    result = {"month": month, "run_id": run_id, "plan": latest.get("summary", {})}

    def human() -> None:
        print_pairs(f"Plan of {month} (run {run_id})", {k: v for k, v in result["plan"].items() if k != ADVICE_KEY})
        print_advice(result["plan"].get(ADVICE_KEY))

    emit(result, as_json, human)


@click.command()
@click.argument("month", required=False)
@click.option("--json", "as_json", is_flag=True)
@friendly
def status(month: str | None, as_json: bool) -> None:
    """Phase, locks, versions with their metrics, finalization and approvals of a month; every month without one."""
    if month is not None:
        check_month(month)
    control = store()
    if month is None:
        lines = months_overview(control, versions())
        emit(lines, as_json, lambda: print_overview(lines))
        return
    row = control.month(month)
    lock = control.lock_info(month)
    lease = control.lease(month)
    result = {
        "month": month, "phase": row["phase"],
        "lock": lock.to_dict() if lock else None,
        "lease": lease.to_dict() if lease else None,
        "final": {"version": row["final_version"], "finalized_by": row["finalized_by"],
                  "approved_by": row["approved_by"], "finalized_at": row["finalized_at"]}
        if row["final_version"] else None,
        "params": control.params(month),
        "params_set": [p.to_dict() for p in param_settings(control.params(month), control.audit_entries(month))],
        "adjustments": control.adjustments_in_force(month).to_dict(),
        "plan": (control.latest_plan(month) or {}).get("summary"),
        "versions": [version_summary(v) for v in control.versions(month)],
        "health": month_health(control, versions(), month),
        "requests": [r.to_dict(now()) for r in control.requests(month) if r.effective_status(now())
                     in OPEN_STATUSES],
        "official_copy_problem": final_mismatch(row, versions()),
    }
    result[ADVICE_KEY] = result["versions"][-1]["metrics"].get(ADVICE_KEY) if result["versions"] else None
    emit(result, as_json, lambda: print_status(result))


@click.command()
@click.argument("month")
@click.option("--actor")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="A parameter to set; repeat for several (e.g. time_limit_s=30 weight.1=2000).")
@click.option("--unset", "unsets", multiple=True, metavar="KEY",
              help="A parameter to return to its default (e.g. stability: strict again); repeat for several.")
@click.option("--json", "as_json", is_flag=True)
@friendly
def params(month: str, actor: str | None, assignments: tuple[str, ...], unsets: tuple[str, ...],
           as_json: bool) -> None:
    """Set or unset batch parameters of a month (validated, audited, snapshotted with every version)."""
    check_planned_month(month)
    who = actions.may(store(), "params", actor_from(actor), month)
    from batch.actions.changes import params_details, set_params  # deferred: start-up speed (pandas, see status)

    details = params_details(dict(parse_assignment(a) for a in assignments), list(unsets))
    current = set_params(store(), sign_as(who, "params", month, details)).params or {}
    emit({"month": month, "params": current}, as_json,
         lambda: print_pairs(f"Parameters of {month}", current))


@click.command()
@click.argument("month")
@click.option("--actor")
@click.option("--pin", metavar="REQ=RES", help="Fix a request to a resource (hard in the next run).")
@click.option("--exclude", metavar="REQ", help="Remove a request from the next run.")
@click.option("--unpin", metavar="REQ", help="Take back the pin of a request.")
@click.option("--include", metavar="REQ", help="Take back the exclusion of a request.")
@click.option("--clear", is_flag=True, help="Take back every pin and exclusion of the month.")
@click.option("--note", required=True, help="Why this adjustment.")
@friendly
def adjust(month: str, actor: str | None, pin: str | None, exclude: str | None, unpin: str | None,
           include: str | None, clear: bool, note: str) -> None:
    """Pin a request to a resource or exclude it, or take that back; the next run honours it."""
    check_planned_month(month)
    who = actions.may(store(), "adjust", actor_from(actor), month)
    given = {"pin": pin, "exclude": exclude, "unpin": unpin, "include": include, "clear": clear or None}
    if sum(v is not None for v in given.values()) != 1:
        raise CliError("Give exactly one of --pin REQ=RES, --exclude REQ, --unpin REQ, --include REQ or --clear.")
    # Deferred: start-up speed (pandas, see status).
    from batch.actions.changes import adjust as adjust_month
    from batch.actions.changes import adjust_details

    kind, value = next((k, str(v)) for k, v in given.items() if v is not None)
    details = adjust_details(kind, value, note)
    outcome = adjust_month(store(), sign_as(who, "adjust", month, details), home=settings().home)
    out.print(outcome.message, markup=False)


COMMANDS = (demo_data, status, plan, params, adjust)
